from control.api.pb import api_pb2 as _api_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentLogsRequest(_message.Message):
    __slots__ = ("request", "pod_uid")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    request: _api_pb2.LogsRequest
    pod_uid: str
    def __init__(self, request: _Optional[_Union[_api_pb2.LogsRequest, _Mapping]] = ..., pod_uid: _Optional[str] = ...) -> None: ...

class AgentExecRequest(_message.Message):
    __slots__ = ("request", "pod_uid")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    request: _api_pb2.ExecRequest
    pod_uid: str
    def __init__(self, request: _Optional[_Union[_api_pb2.ExecRequest, _Mapping]] = ..., pod_uid: _Optional[str] = ...) -> None: ...
