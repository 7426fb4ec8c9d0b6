"""Unit tests of the bench's arithmetic and report: percentiles, targets, the table, the JSON, the summaries."""
from __future__ import annotations

import json

import pytest

from bench import exports, feed, notify, profile, report
from bench.stats import Latency, Throughput, percentile, ratio


def lat(p50: float, p99: float | None = None) -> dict:
    return {"n": 10, "p50_ms": p50, "p99_ms": p99 if p99 is not None else p50 * 2, "mean_ms": p50}


def tp(rate: float, concurrency: int = 16) -> dict:
    return {"concurrency": concurrency, "requests": 100, "seconds": 100 / rate, "errors": 0, "lost": 0, "rate": rate}


def figures() -> dict:
    """A complete set of figures, every target met."""
    return {
        "floor": {"sequential": lat(1.0), "throughput": {"1": tp(1000, 1), "16": tp(4000)}},
        "direct": {"search": {"sequential": lat(2.0), "threads16": tp(800)},
                   "get_event": {"sequential": lat(1.5), "threads16": tp(900)}},
        "bridge": {"search": {"sequential": lat(3.0), "throughput": {"16": tp(700)}},
                   "get_event": {"sequential": lat(2.5), "throughput": {"16": tp(720)}}},
        "size": {"1000": {"attributes": 1000, "bytes": 400_000, "direct": lat(10.0), "bridge": lat(14.0)}},
        "notifications": {"sent": 1000, "received": 1000, "unique": 1000, "lost": 0, "duplicates": 0,
                          "send_rate": 2000.0, "rate": 1900.0, "latency": lat(0.5)},
        "feed": {"backlog": 5000, "duplicates": 0, "lost": 0, "seconds": 5.0, "rate": 1000.0},
        "start": {"runs": [0.5], "median_s": 0.5},
        "peer": {"version": "0.1.5", "misp_url": "https://x", "ours": {"search": {"sequential": lat(2.0)}},
                 "orig": {"search": {"sequential": lat(4.0)}}},
        "exports": {"sizes": {"1000": {
            "stix2": {"bytes": 2_000_000, "paged": True, "slices": 4, "module": lat(4000.0), "direct": lat(4100.0),
                      "bridge": lat(4700.0)},
            "ctim": {"bytes": 40_000, "paged": False, "slices": 1, "module": lat(20.0), "direct": lat(30.0),
                     "bridge": lat(32.0)},
            "xsoar": {"bytes": 500_000, "paged": False, "slices": 1, "module": lat(10.0), "direct": lat(20.0),
                      "bridge": lat(21.0)}}},
            "profile": {"ctim": {"seconds": 0.05, "packages": [["dxlmispservice", 60.0], ["stdlib", 40.0]],
                                 "top_self": [["convert (dxlmispservice)", 30.0]]}}},
        "feed_formats": {"backlog": 5000, "duplicates": 0, "lost": 0, "seconds": 6.0, "rate": 833.0,
                         "formats": {"misp": {}, "ctim": {}}},
    }


def test_percentile_interpolates_between_ranks() -> None:
    """The median of an even count is the mean of the middle two; ends are min and max."""
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1
    assert percentile([4, 1, 3, 2], 100) == 4
    assert percentile([10.0], 99) == 10.0


def test_percentile_rejects_empty_and_out_of_range() -> None:
    """No samples, or a percentile outside 0..100, is an error rather than a made-up figure."""
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_converts_seconds_to_milliseconds() -> None:
    """Latency.of takes seconds and reports milliseconds."""
    summary = Latency.of([0.001, 0.002, 0.003])
    assert summary.n == 3
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.mean_ms == pytest.approx(2.0)
    assert summary.p99_ms == pytest.approx(2.98)


def test_throughput_rate_leaves_out_lost_requests() -> None:
    """A lost request does not count as answered; an error does."""
    run = Throughput(requests=100, seconds=2.0, errors=5, lost=10)
    assert run.rate == pytest.approx(45.0)
    assert run.to_dict()["rate"] == 45.0


def test_ratio_is_none_when_a_side_is_missing() -> None:
    """A ratio with a missing or zero denominator is None, not an exception or infinity."""
    assert ratio(None, 2.0) is None
    assert ratio(1.0, 0) is None
    assert ratio(3.0, 2.0) == 1.5


def test_targets_computed_from_the_figures() -> None:
    """Each target's value follows its definition in issue 5."""
    computed = report.targets(figures())
    assert set(computed) == set(report.TARGETS)
    # worst call: search (3.0 - 2.0) / 1.0 = 1.0, get_event (2.5 - 1.5) / 1.0 = 1.0
    assert computed["added_latency_over_floor"]["value"] == pytest.approx(1.0)
    # worst call: get_event 720 / 900 (search is 700 / 800)
    assert computed["throughput_16_vs_direct"]["value"] == pytest.approx(0.8)
    assert computed["size_1000_vs_direct"]["value"] == pytest.approx(1.4)
    assert computed["peer_legacy_search_ratio"]["value"] == pytest.approx(0.5)
    assert computed["start_s"]["value"] == 0.5
    assert all(target["met"] for target in computed.values())
    assert computed["notifications_rate"]["bar"] == 1000
    assert computed["exports_ctim_vs_stix2_1000"]["value"] == pytest.approx(0.005)
    assert computed["exports_bridge_vs_direct_1000"]["value"] == pytest.approx(32 / 30, abs=1e-3)


def test_export_bridge_target_takes_the_worst_whole_format_and_leaves_paged_ones_out() -> None:
    """A paged export (stix2 at 1.15×) does not count; a whole one over 1.1× fails the target."""
    data = figures()
    assert report.targets(data)["exports_bridge_vs_direct_1000"]["met"] is True
    data["exports"]["sizes"]["1000"]["xsoar"]["bridge"] = lat(24.0)
    computed = report.targets(data)["exports_bridge_vs_direct_1000"]
    assert computed["value"] == pytest.approx(1.2) and computed["met"] is False


def test_package_of_names_the_top_level_package() -> None:
    """A profiled file is put in its site-packages package, ours, the standard library, or builtins."""
    assert exports.package_of("/v/lib/python3.11/site-packages/stix2/base.py") == "stix2"
    assert exports.package_of("/v/lib/python3.11/site-packages/six.py") == "six"
    assert exports.package_of("/work/main/dxlmispservice/formats/ctim.py") == "dxlmispservice"
    assert exports.package_of("/usr/lib/python3.11/copy.py") == "stdlib"
    assert exports.package_of("~") == "builtins"


def test_added_latency_takes_the_worst_call() -> None:
    """The added-latency target uses the call with the most added latency."""
    data = figures()
    data["bridge"]["get_event"]["sequential"] = lat(4.0)
    computed = report.targets(data)
    assert computed["added_latency_over_floor"]["value"] == pytest.approx(2.5)
    assert computed["added_latency_over_floor"]["met"] is False


def test_missing_section_gives_no_value_and_is_not_met() -> None:
    """A section that did not run leaves its targets without a value, and not met."""
    data = figures()
    del data["feed"]
    del data["peer"]
    computed = report.targets(data)
    for name in ("feed_duplicates", "feed_lost", "peer_legacy_search_ratio"):
        assert computed[name]["value"] is None
        assert computed[name]["met"] is False


def test_loss_targets_fail_on_any_loss() -> None:
    """One lost notification or one duplicate feed event fails its target."""
    data = figures()
    data["notifications"]["lost"] = 1
    data["feed"]["duplicates"] = 2
    computed = report.targets(data)
    assert computed["notifications_lost"]["met"] is False
    assert computed["feed_duplicates"]["met"] is False
    assert computed["feed_lost"]["met"] is True


def test_met_rules() -> None:
    """'<=' and '>=' compare against the bar; an unknown rule is an error."""
    assert report.met("<=", 1.5, 1.5)
    assert not report.met(">=", 0.69, 0.7)
    with pytest.raises(ValueError):
        report.met("==", 1, 1)


def test_markdown_has_a_row_per_figure_and_every_target() -> None:
    """The table shows the figures beside their baselines, every target, and failed sections."""
    data = figures()
    text = report.markdown(data, report.targets(data), {"peer": "boom"}, machine="test box")
    assert text.startswith("Machine: test box")
    assert "| Bridge legacy search(eventid), sequential | 3.00 / 6.00 ms | direct 2.00 / 4.00 ms | 1.50× |" in text
    for name in report.TARGETS:
        assert f"| {name} |" in text
    assert "**peer failed:** boom" in text


def test_json_path_follows_the_environment(tmp_path) -> None:
    """$BENCH_JSON names the file; without it the default is bench/out/latest.json."""
    assert report.json_path({"BENCH_JSON": str(tmp_path / "x.json")}) == tmp_path / "x.json"
    assert report.json_path({}).parts[-3:] == ("bench", "out", "latest.json")


def test_write_json_round_trips(tmp_path) -> None:
    """The written document reads back unchanged, directories made as needed."""
    path = report.write_json(tmp_path / "a" / "b.json", {"targets": report.targets(figures())})
    assert json.loads(path.read_text())["targets"]["start_s"]["value"] == 0.5


def test_profile_summary_partitions_busy_samples() -> None:
    """Known costs win over layers, waiting leaves are left out, and the shares add up to 100."""
    stacks = profile.parse_collapsed(
        "run (dxlclient/_thread_pool.py:54);handle (dxlmispservice/handler.py:63);"
        "Session.merge_environment_settings (requests/sessions.py:1);getproxies (urllib/request.py:2) 3\n"
        "run (dxlclient/_thread_pool.py:54);handle (dxlmispservice/handler.py:63);send (http/client.py:9) 5\n"
        "Client.loop (pahoproxy/client.py:5) 2\n"
        "run (dxlclient/_thread_pool.py:54);Condition.wait (threading.py:320) 40\n"
        "not a sample line\n")
    summary = profile.summarize(stacks)
    assert summary["samples"] == 10
    assert summary["waiting_samples"] == 40
    categories = summary["categories"]
    assert categories["requests trust_env scan (proxies, netrc)"] == 30.0
    assert categories["HTTP exchange with MISP (requests, urllib3, http.client, ssl)"] == 50.0
    assert categories["dxlclient + paho (DXL messaging, broker socket)"] == 20.0
    assert sum(categories.values()) == pytest.approx(100.0)
    assert summary["top_self"][0] == ["send (http/client.py)", 50.0]


def test_notification_summary_counts_losses_and_duplicates() -> None:
    """Frames never received are lost, frames received twice are duplicates, warm-up frames are ignored."""
    items = [(1.0 + i, {"bench": {"seq": seq, "sent": 1.0 + i - 0.001}}) for i, seq in enumerate([0, 1, 1, 3])]
    items.append((2.5, {"bench": {"warmup": True}}))
    result = notify.summarize(items, count=5, target_rate=1000.0, first=1.0, send_seconds=0.005, frame_bytes=10)
    assert (result["received"], result["unique"], result["lost"], result["duplicates"]) == (4, 3, 2, 1)
    assert result["latency"]["p50_ms"] == pytest.approx(1.0)
    assert result["rate"] == pytest.approx(1.0)


def test_feed_summary_counts_duplicates_losses_and_strangers() -> None:
    """Against the created uuids: a uuid twice is a duplicate, one absent is lost, another is unexpected."""
    items = [(10.0, {"Event": {"uuid": "a"}}), (11.0, {"Event": {"uuid": "b"}}), (12.0, {"Event": {"uuid": "a"}}),
             (13.0, {"Event": {"uuid": "z"}}), (14.0, {"nothing": 1})]
    result = feed.summarize(items, ["a", "b", "c"], spawned=9.0, create_seconds=1.0)
    assert (result["received"], result["unique"], result["duplicates"], result["lost"]) == (3, 2, 1, 1)
    assert result["unexpected"] == 2
    assert result["seconds"] == pytest.approx(2.0)
    assert result["from_spawn_s"] == pytest.approx(3.0)


def test_feed_summary_counts_each_format_on_its_own_and_sums_them() -> None:
    """With formats misp and ctim, a uuid missing from ctim is lost there though misp has it; totals add up."""
    def ctim(uuid: str) -> dict:
        return {"feed": {"position": {"uuid": uuid}}, "format": "ctim", "document": {}}
    items = [(1.0, {"Event": {"uuid": "a"}}), (1.1, ctim("a")), (2.0, {"Event": {"uuid": "b"}}), (2.1, ctim("a")),
             (3.0, {"feed": {}, "format": "stix2"})]
    result = feed.summarize(items, ["a", "b"], spawned=0.5, create_seconds=1.0, formats=("misp", "ctim"))
    assert result["formats"]["misp"] == {"received": 2, "unique": 2, "duplicates": 0, "lost": 0, "unexpected": 0}
    assert result["formats"]["ctim"] == {"received": 2, "unique": 1, "duplicates": 1, "lost": 1, "unexpected": 0}
    assert (result["duplicates"], result["lost"], result["unique"], result["unexpected"]) == (1, 1, 1, 1)


def test_breakdown_splits_a_call_into_its_parts() -> None:
    """The in-service timers split a bridged call's p50 into parts that add up to the whole."""
    entry = {"bridge": lat(2.0), "stages": {"queue": lat(0.05), "message": lat(1.3), "callback": lat(1.2),
                                            "handler": lat(1.1), "misp": lat(0.8)}}
    parts = report.breakdown(entry)
    assert parts is not None
    assert parts["service's own work"] == pytest.approx(0.3)
    assert parts["fabric, requester and paho (the rest)"] == pytest.approx(0.65)
    assert sum(parts.values()) == pytest.approx(2.0)
    assert report.breakdown({"bridge": lat(2.0), "stages": {}}) is None
