"""Argument parsing of the `flotilla` CLI: global flags anywhere, object references, verbs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from control.cli import main as climain
from control.cli.errors import UsageError
from control.cli.main import ObjectRef, build_parser, parse_refs, parse_timeout, split_globals
from control.cli.verbs_server import duration, server_options


def test_globals_before_the_verb() -> None:
    opts, rest = split_globals(["--server", "h:1", "-n", "kube-system", "get", "pods"])
    assert (opts.server, opts.namespace) == ("h:1", "kube-system")
    assert rest == ["get", "pods"]


def test_globals_after_the_verb_and_inline_forms() -> None:
    opts, rest = split_globals(
        ["get", "pods", "--namespace=web", "--debug", "--config=/c", "--request-timeout", "5s"]
    )
    assert opts.namespace == "web" and opts.debug and opts.config == "/c"
    assert opts.request_timeout == "5s"
    assert rest == ["get", "pods"]


def test_short_namespace_glued_and_double_dash_stops() -> None:
    opts, rest = split_globals(["get", "-nkube-system", "pods", "--", "-n", "x"])
    assert opts.namespace == "kube-system"
    assert rest == ["get", "pods", "--", "-n", "x"]


def test_global_flag_without_value() -> None:
    with pytest.raises(UsageError, match="--server"):
        split_globals(["get", "pods", "--server"])


def test_refs_type_and_names() -> None:
    refs = parse_refs(["deploy", "a", "b"])
    assert [(r.info.kind, r.name) for r in refs] == [("Deployment", "a"), ("Deployment", "b")]


def test_refs_type_slash_name() -> None:
    refs = parse_refs(["pod/a", "svc/b"])
    assert [(r.info.kind, r.name) for r in refs] == [("Pod", "a"), ("Service", "b")]


def test_refs_comma_types_without_names() -> None:
    refs = parse_refs(["pods,svc"], names_required=False, allow_many_types=True)
    assert refs == [
        ObjectRef(refs[0].info, None),
        ObjectRef(refs[1].info, None),
    ]
    assert [r.info.plural for r in refs] == ["pods", "services"]


def test_refs_mixing_forms_is_an_error() -> None:
    with pytest.raises(UsageError):
        parse_refs(["pods", "pod/a"])
    with pytest.raises(UsageError):
        parse_refs(["pod/"])


def test_refs_name_required() -> None:
    with pytest.raises(UsageError, match="name"):
        parse_refs(["pods"])


def test_unknown_kind_message() -> None:
    with pytest.raises(climain.CliError) as e:
        parse_refs(["foo", "x"])
    assert e.value.message == 'the server doesn\'t have a resource type "foo"'


def test_unknown_kind_exit_code_and_stderr() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = climain.main(["get", "foo"], stdout=out, stderr=err)
    assert code == 1
    assert err.getvalue() == 'error: the server doesn\'t have a resource type "foo"\n'
    assert out.getvalue() == ""


def test_usage_error_exits_1_not_2() -> None:
    err = io.StringIO()
    assert climain.main(["frobnicate"], stderr=err) == 1
    assert err.getvalue().startswith("error: ")


def test_timeouts() -> None:
    assert parse_timeout("30s", "--timeout") == 30
    assert parse_timeout("2", "--timeout") == 2
    assert parse_timeout("1m30s", "--timeout") == 90
    assert parse_timeout("0", "--timeout") is None
    with pytest.raises(UsageError):
        parse_timeout("soon", "--timeout")


def test_verb_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["delete", "pod", "x", "--cascade=orphan", "--grace-period", "0", "--force", "--wait"]
    )
    assert args.cascade == "Orphan" and args.grace_period == 0 and args.force and args.wait
    args = parser.parse_args(["apply", "-f", "a.yaml", "-f", "b.yaml", "--dry-run=server"])
    assert args.filename == ["a.yaml", "b.yaml"] and args.dry_run == "server"
    args = parser.parse_args(["apply", "-f", "a.yaml", "--dry-run"])
    assert args.dry_run == "client"
    args = parser.parse_args(["get", "pods", "-o", "jsonpath={.items[0].metadata.name}", "-w"])
    assert args.output.startswith("jsonpath=") and args.watch


def test_server_flags_go_duration_and_extra() -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/x",
            "--node-monitor-grace-period",
            "40s",
            "--pod-eviction-timeout",
            "5m",
            "--event-ttl",
            "1h",
            "--disable",
            "scheduler,controllers",
            "--default-not-ready-toleration-seconds",
            "30",
            "--node-eviction-rate",
            "0.5",
            "--with-agent",
            "--node-name",
            "n1",
        ]
    )
    assert args.node_monitor_grace_period == 40.0
    assert args.pod_eviction_timeout == 300.0
    assert args.disable == {"scheduler", "controllers"}
    options, extra = server_options(args, args.data_dir)
    assert options.event_ttl_seconds == 3600
    assert options.disable == {"scheduler", "controllers"}
    # a flag ServerOptions has no field for yet is kept in ``extra`` until it does
    assert 40.0 in (
        extra.get("node_monitor_grace_period"),
        getattr(options, "node_monitor_grace_period", None),
    )
    # the in-process agent is the CLI's wiring, not a control-plane option
    assert args.with_agent is True and args.node_name == "n1"
    assert "with_agent" not in extra
    assert duration("2") == 2.0


def test_server_unknown_disable_is_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown component"):
        build_parser().parse_args(["server", "--disable", "dns,servicelbx"])
    args = build_parser().parse_args(["server", "--disable", "dns", "--cluster-domain",
                                      "corp.internal", "--dns-listen", "127.0.0.1:5353"])
    assert args.disable == {"dns"}


def test_server_dns_flags(tmp_path: Path) -> None:
    args = build_parser().parse_args(["server", "--cluster-domain", "corp.internal.",
                                      "--dns-listen", "127.0.0.1:5353"])
    options, _ = server_options(args, tmp_path)
    assert (options.cluster_domain, options.dns_listen) == ("corp.internal", "127.0.0.1:5353")
    for bad in (["--cluster-domain", "Bad_Domain"], ["--dns-listen", "127.0.0.1"]):
        with pytest.raises(UsageError, match=bad[0]):
            server_options(build_parser().parse_args(["server", *bad]), tmp_path)


def test_server_store_flags() -> None:
    parser = build_parser()
    args = parser.parse_args(["server", "--watch-cache-size-bytes", "512Mi",
                              "--recover-to-last-good"])
    options, extra = server_options(args, Path("/tmp/x"))
    assert options.watch_cache_size_bytes == 512 * 1024 * 1024
    assert options.recover_to_last_good is True and not extra
    options, _ = server_options(parser.parse_args(["server"]), Path("/tmp/x"))
    assert options.watch_cache_size_bytes == 256 * 1024 * 1024
    assert options.recover_to_last_good is False
    assert parser.parse_args(["server", "--watch-cache-size-bytes", "1000"]
                             ).watch_cache_size_bytes == 1000
    for bad in ("0", "-1", "lots"):
        with pytest.raises(UsageError, match="watch-cache-size-bytes"):
            parser.parse_args(["server", "--watch-cache-size-bytes", bad])


def test_server_max_request_bytes_flag() -> None:
    parser = build_parser()
    options, _ = server_options(parser.parse_args(["server"]), Path("/tmp/x"))
    assert options.max_request_bytes == 3 * 1024 * 1024
    args = parser.parse_args(["server", "--max-request-bytes", "1Mi"])
    assert server_options(args, Path("/tmp/x"))[0].max_request_bytes == 1024 * 1024
    with pytest.raises(UsageError, match="max-request-bytes"):
        server_options(parser.parse_args(["server", "--max-request-bytes", "4Gi"]),
                       Path("/tmp/x"))
    for bad in ("0", "lots"):
        with pytest.raises(UsageError, match="max-request-bytes"):
            parser.parse_args(["server", "--max-request-bytes", bad])


def test_server_inflight_flags() -> None:
    parser = build_parser()
    options, _ = server_options(parser.parse_args(["server"]), Path("/tmp/x"))
    assert (options.max_requests_inflight, options.max_mutating_requests_inflight) == (400, 200)
    args = parser.parse_args(["server", "--max-requests-inflight", "0",
                              "--max-mutating-requests-inflight", "7"])
    options, _ = server_options(args, Path("/tmp/x"))
    assert (options.max_requests_inflight, options.max_mutating_requests_inflight) == (0, 7)
    with pytest.raises(UsageError, match="--max-requests-inflight"):
        server_options(parser.parse_args(["server", "--max-requests-inflight", "-1"]),
                       Path("/tmp/x"))


def test_server_priority_and_fairness_flag() -> None:
    parser = build_parser()
    options, _ = server_options(parser.parse_args(["server"]), Path("/tmp/x"))
    assert options.enable_priority_and_fairness is True
    for given, want in ((["--enable-priority-and-fairness=false"], False),
                        (["--enable-priority-and-fairness", "FALSE"], False),
                        (["--enable-priority-and-fairness"], True),
                        (["--enable-priority-and-fairness=true"], True)):
        options, _ = server_options(parser.parse_args(["server", *given]), Path("/tmp/x"))
        assert options.enable_priority_and_fairness is want, given
    with pytest.raises(UsageError, match="expected true or false"):
        parser.parse_args(["server", "--enable-priority-and-fairness=maybe"])


def test_server_service_account_flags(tmp_path: Path) -> None:
    args = build_parser().parse_args([
        "server", "--service-account-signing-key-file", "/k/sa.key",
        "--service-account-key-file", "/k/old.pub", "--service-account-key-file", "/k/b.pub",
        "--service-account-issuer", "https://a", "--service-account-issuer", "https://b",
        "--api-audiences", "api, vault", "--service-account-max-token-expiration", "2h"])
    options, _ = server_options(args, tmp_path)
    assert options.service_account_signing_key_file == Path("/k/sa.key")
    assert options.service_account_key_files == [Path("/k/old.pub"), Path("/k/b.pub")]
    assert options.service_account_issuers == ["https://a", "https://b"]
    assert options.api_audiences == ["api", "vault"]
    assert options.service_account_max_token_expiration == 7200
    defaults, _ = server_options(build_parser().parse_args(["server"]), tmp_path)
    assert defaults.service_account_issuers == ["https://kubernetes.default.svc.cluster.local"]
    assert defaults.service_account_signing_key_file is None and not defaults.api_audiences
    for bad, why in ((["--service-account-max-token-expiration", "5m"], "at least 10m"),
                     (["--api-audiences", " , "], "at least one audience"),
                     (["--service-account-issuer", " "], "may not be empty")):
        with pytest.raises(UsageError, match=why):
            server_options(build_parser().parse_args(["server", *bad]), tmp_path)


def test_server_connection_flags() -> None:
    parser = build_parser()
    options, _ = server_options(parser.parse_args(["server"]), Path("/tmp/x"))
    assert (options.max_connections, options.max_connections_per_source,
            options.reserved_connections) == (None, None, None)
    options, _ = server_options(parser.parse_args([
        "server", "--max-connections", "100", "--max-connections-per-source", "10",
        "--reserved-connections", "20"]), Path("/tmp/x"))
    assert (options.max_connections, options.max_connections_per_source,
            options.reserved_connections) == (100, 10, 20)
    options, _ = server_options(parser.parse_args([
        "server", "--http2-max-streams-per-connection", "0"]), Path("/tmp/x"))
    assert options.http2_max_streams_per_connection == 0
    for bad, match in ((["--max-connections-per-source", "0"], "must be 1 or more"),
                       (["--http2-max-streams-per-connection", "-1"], "must be 0 or more"),
                       (["--reserved-connections", "-1"], "must be 0 or more"),
                       (["--reserved-connections", "5"], "needs --max-connections-per")):
        with pytest.raises(UsageError, match=match):
            server_options(parser.parse_args(["server", *bad]), Path("/tmp/x"))


def test_token_flag_replaces_the_certificate_and_dials_the_token_port() -> None:
    from control.cli.main import with_token
    from control.client.config import ClientConfig
    from control.client.credentials import Credentials

    opts, rest = split_globals(["get", "pods", "--token", "abc"])
    assert (opts.token, rest) == ("abc", ["get", "pods"])
    cfg = ClientConfig("10.0.0.5:6443", "file", Credentials(
        ca_pem=b"ca", cert_pem=b"cert", key_pem=b"key"), supervisor="10.0.0.5:9345")
    got = with_token(cfg, "abc", explicit_server=False)
    assert got.server == "10.0.0.5:9345"
    assert (got.credentials.ca_pem, got.credentials.cert_pem, got.credentials.key_pem,
            got.credentials.token) == (b"ca", None, None, "abc")
    assert with_token(cfg, "abc", explicit_server=True).server == "10.0.0.5:6443"
    with pytest.raises(UsageError, match="--token may not be empty"):
        with_token(cfg, " ", explicit_server=False)
