"""Turns the suite's results document into Markdown tables and PNG plots."""
from __future__ import annotations

import os


def _f(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


LOAD_SCENARIOS = ("plain", "apisix", "sizes", "workers")


def _status_text(entry: dict) -> str:
    status = entry.get("status", "?")
    reason = entry.get("reason", "")
    if status == "not installed":
        return "not installed"
    if status == "skipped":
        return reason if reason.startswith("skipped") else f"skipped: {reason}"
    return f"{status}: {reason}" if reason else status


def load_table(case: dict, show_scaling: bool = False) -> list[str]:
    head = ("| proxy | req/s | p50 ms | p99 ms | CPU µs/req | upstream CPU µs/req | RSS MiB "
            "| errors | CPU vs nginx | req/s vs nginx | p99 vs nginx |")
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if show_scaling:
        head += " scaling vs 1 worker |"
        sep += "---:|"
    lines = [head, sep]
    notes = []
    for label, entry in case["targets"].items():
        if entry.get("status") != "ok":
            cells = 10 + show_scaling
            lines.append(f"| {label} | {_status_text(entry)} |" + " |" * (cells - 1))
            continue
        s = entry["summary"]
        r = entry.get("vs_nginx", {})
        errors = f"{s['errors']} (!)" if s["errors"] else "0"
        name = label
        if entry.get("note"):
            notes.append(f"{label}: {entry['note']}")
            name = f"{label} ≈"
        row = (f"| {name} | {_f(s['rps'], ',.0f')} | {_f(s['p50_ms'], '.2f')} "
               f"| {_f(s['p99_ms'], '.2f')} | {_f(s['proxy_cpu_us_per_req'], '.1f')} "
               f"| {_f(s['upstream_cpu_us_per_req'], '.1f')} | {_f(s['rss_total_mib'], '.0f')} "
               f"| {errors} | {_ratio(r.get('cpu_per_request'))} "
               f"| {_ratio(r.get('requests_per_second'))} | {_ratio(r.get('p99'))} |")
        if show_scaling:
            row += f" {_ratio(entry.get('scaling', {}).get('ratio'))} |"
        lines.append(row)
    lines.append("")
    for note in notes:
        lines.append(f"≈ {note}  ")
    if notes:
        lines.append("")
    return lines


def summary_tables(doc: dict) -> list[str]:
    """Throughput and CPU per request: one row per proxy, one column per load case."""
    columns = []
    for name in LOAD_SCENARIOS:
        scen = doc["scenarios"].get(name)
        if not scen or "cases" not in scen:
            continue
        for case_name, case in scen["cases"].items():
            if "targets" in case:
                columns.append((f"{name}: {case_name}", case["targets"]))
    if not columns:
        return []
    labels: list[str] = []
    for _, targets in columns:
        for label in targets:
            if label not in labels:
                labels.append(label)
    out = []
    for title, metric, spec in (("Throughput, req/s (higher is better)", "rps", ",.0f"),
                                ("Proxy CPU µs per request (lower is better)",
                                 "proxy_cpu_us_per_req", ".1f"),
                                ("p99 latency, ms (lower is better)", "p99_ms", ".2f")):
        out += [f"### {title}", "",
                "| proxy | " + " | ".join(c for c, _ in columns) + " |",
                "|---|" + "---:|" * len(columns)]
        for label in labels:
            cells = []
            for _, targets in columns:
                entry = targets.get(label)
                if entry is None:
                    cells.append("")
                elif entry.get("status") != "ok":
                    cells.append(entry.get("status", ""))
                else:
                    cells.append(_f(entry["summary"].get(metric), spec))
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def ratio_lines(doc: dict) -> list[str]:
    """gateway/nginx for scenarios 1 and 2, the figures the issue asks for first."""
    out = []
    for name in ("plain", "apisix"):
        scen = doc["scenarios"].get(name)
        if not scen or "cases" not in scen:
            continue
        for case_name, case in scen["cases"].items():
            gw = case.get("targets", {}).get("gateway", {})
            r = gw.get("vs_nginx")
            if r:
                out.append(f"- {scen['title']}, {case_name}: CPU per request "
                           f"**{_ratio(r['cpu_per_request'])}**, req/s "
                           f"{_ratio(r['requests_per_second'])}, p99 {_ratio(r['p99'])} "
                           f"(gateway / nginx, lower CPU is better)")
            elif gw:
                out.append(f"- {scen['title']}, {case_name}: {_status_text(gw)}")
    return out


def markdown(doc: dict) -> str:
    env = doc.get("environment", {})
    settings = doc["settings"]
    lines = [f"# Benchmark results {env.get('time', '')}", "",
             f"{env.get('cpus')} CPUs, {env.get('kernel')}, Python {env.get('python')}; "
             f"wrk pinned to cpu {env.get('wrk_cpu')}; {settings['connections']} connections; "
             f"{settings['runs']} run(s) of {settings['duration']:g} s after {settings['warmup']:g}"
             f" s warm-up (scenarios 3 and 4: {settings['size_runs']} run(s)); medians; ratios "
             f"to nginx pair by pair. Upstream: {env.get('upstream')}. Whole run: "
             f"{doc.get('duration_s', 0):.0f} s.", ""]
    lines += ["## Peers", "", "| peer | installed | version | what |", "|---|---|---|---|"]
    for name, info in doc.get("peers", {}).items():
        lines.append(f"| {name} | {'yes' if info['installed'] else 'not installed'} "
                     f"| {info['version']} | {info['description']} |")
    lines.append("")
    ratios = ratio_lines(doc)
    if ratios:
        lines += ["## Gateway / nginx", ""] + ratios + [""]
    plugins = doc["scenarios"].get("plugins")
    if plugins and plugins.get("status") == "ok":
        lines += [f"Plugin overhead: 5 no-op Python plugins add "
                  f"**{_f(plugins['extra_cpu_us_per_request'], '.2f')} µs** of CPU per request "
                  f"({_f(plugins['extra_cpu_us_per_plugin'], '.2f')} µs per plugin; target "
                  f"< {plugins['target_us']:g} µs).", ""]
    summary = summary_tables(doc)
    if summary:
        lines += ["## Summary", ""] + summary
    for name, scen in doc["scenarios"].items():
        lines += [f"## {scen.get('title', name)}", ""]
        if scen.get("status") in ("skipped", "not installed", "failed") and name not in (
                "router", "memory"):
            lines += [_status_text(scen), ""]
            continue
        if name in LOAD_SCENARIOS:
            if scen.get("note"):
                lines += [scen["note"], ""]
            for case_name, case in scen["cases"].items():
                lines += [f"### {case_name}", ""]
                if "targets" not in case:
                    lines += [case.get("note", ""), ""]
                    continue
                lines += load_table(case, show_scaling=(name == "workers"))
        elif name == "plugins":
            case = {"targets": scen.get("targets", {})}
            lines += load_table(case)
            pairs = ", ".join(_f(x, ".2f") for x in scen.get("extra_cpu_us_per_request_by_run", []))
            lines += [f"Extra CPU per request with 5 no-op plugins: "
                      f"{_f(scen.get('extra_cpu_us_per_request'), '.2f')} µs (median of the "
                      f"pairwise differences {pairs}); target < 2 µs.", ""]
        elif name == "router":
            lines += ["| routes | compile ms | memory MiB | lookup first ns | lookup middle ns "
                      "| lookup last-added ns | miss ns |", "|---:|---:|---:|---:|---:|---:|---:|"]
            for s in scen.get("sizes", []):
                if "failed" in s:
                    lines.append(f"| {s['routes']:,} | failed: {s['failed'][:100]} | | | | | |")
                    continue
                lk = s["lookups_ns"]
                lines.append(f"| {s['routes']:,} | {s['compile_ms']:.2f} "
                             f"| {s['memory_bytes'] / 2**20:.1f} | {lk['first']:.0f} "
                             f"| {lk['middle']:.0f} | {lk['last']:.0f} | {lk['miss']:.0f} |")
            lines += ["", "Lookups through the Python API (`Router.match`, includes the call); "
                      "routes mix `:param` paths, `/prefix/*` and exact paths, one in eight "
                      "with a host.", ""]
        elif name == "reload":
            if scen.get("status") != "ok":
                lines += [_status_text(scen), ""]
                continue
            load = scen.get("load", {})
            lines += ["| workers | reloads | p50 ms | p99 ms | max ms | requests during "
                      "reloads | failed requests |", "|---:|---:|---:|---:|---:|---:|---:|",
                      f"| {scen['workers']} | {len(scen['reload_ms'])} | {scen['p50_ms']:.1f} "
                      f"| {scen['p99_ms']:.1f} | {scen['max_ms']:.1f} "
                      f"| {_f(load.get('requests'), ',')} | {_f(scen.get('failed_requests'), ',')} |",
                      "", "Time from the atomic write of the config file to status.json "
                      "showing every worker on the new version, with wrk loading the gateway "
                      "throughout; failed = socket errors + non-2xx seen by wrk.", ""]
        elif name == "memory":
            lines += ["| routes | master MiB | per worker idle MiB | per worker under load MiB "
                      "| per worker peak MiB | load req/s |", "|---:|---:|---:|---:|---:|---:|"]
            for c in scen.get("configs", []):
                if "failed" in c:
                    lines.append(f"| {c['routes']:,} | failed: {c['failed'][:100]} | | | | |")
                    continue
                fmt = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
                lines.append(f"| {c['routes']:,} | {c['idle']['master_mib']:.1f} "
                             f"| {fmt(c['idle']['workers_mib'])} "
                             f"| {fmt(c['under_load']['workers_mib'])} "
                             f"| {fmt(c['peak'].get('workers_mib', []))} "
                             f"| {c['load_rps']:,.0f} |")
            lines += ["", f"{scen['workers']} workers; RSS from /proc/<pid>/statm.", ""]
    if doc.get("flagged"):
        lines += ["**Warning**: some measured runs saw socket errors or non-2xx responses "
                  "(errors column); their figures are suspect.", ""]
    if doc.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in doc["plots"]] + [""]
    elif doc.get("plots_note"):
        lines += [doc["plots_note"], ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots

def _load_columns(doc: dict):
    columns = []
    for name in LOAD_SCENARIOS:
        scen = doc["scenarios"].get(name)
        if not scen or "cases" not in scen:
            continue
        for case_name, case in scen["cases"].items():
            if "targets" in case:
                short = {"plain": "1", "apisix": "2", "sizes": "3", "workers": "4"}[name]
                columns.append((f"{short}: {case_name}", case["targets"]))
    return columns


def plots(doc: dict, out_dir: str) -> tuple[list[str], str]:
    """Grouped bar charts: throughput, p99 and CPU per request per scenario per proxy."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed: no plots (pip install -e '.[bench]')"
    columns = _load_columns(doc)
    written: list[str] = []
    if columns:
        labels: list[str] = []
        for _, targets in columns:
            for label, entry in targets.items():
                if entry.get("status") == "ok" and label not in labels:
                    labels.append(label)
        for fname, metric, ylabel, title in (
                ("throughput.png", "rps", "requests / s", "Throughput per scenario (higher is better)"),
                ("p99_latency.png", "p99_ms", "p99 latency, ms", "p99 latency (lower is better)"),
                ("cpu_per_request.png", "proxy_cpu_us_per_req", "proxy CPU µs / request",
                 "CPU per request (lower is better)")):
            fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(columns) + 3), 5.5))
            width = 0.8 / max(len(labels), 1)
            cmap = plt.get_cmap("tab10")
            shown = [label for label in labels if any(
                targets.get(label, {}).get("summary", {}).get(metric) is not None
                for _, targets in columns)]
            width = 0.8 / max(len(shown), 1)
            for i, label in enumerate(shown):
                xs, ys = [], []
                for j, (_, targets) in enumerate(columns):
                    entry = targets.get(label, {})
                    value = entry.get("summary", {}).get(metric) if entry.get("status") == "ok" else None
                    if value is not None:
                        xs.append(j + (i - (len(shown) - 1) / 2) * width)
                        ys.append(value)
                ax.bar(xs, ys, width=width, label=label, color=cmap(labels.index(label) % 10),
                       edgecolor="black" if label == "gateway" else None,
                       linewidth=1.2 if label == "gateway" else 0)
            ax.set_xticks(range(len(columns)))
            ax.set_xticklabels([c for c, _ in columns], rotation=20, ha="right", fontsize=8)
            ax.set_ylabel(ylabel)
            if metric != "rps":
                ax.set_yscale("log")
            ax.set_title(title)
            ax.legend(fontsize=8, ncol=2)
            ax.grid(axis="y", alpha=0.3)
            fig.tight_layout()
            fig.savefig(os.path.join(out_dir, fname), dpi=90)
            plt.close(fig)
            written.append(fname)
    router = doc["scenarios"].get("router")
    sizes = [s for s in (router or {}).get("sizes", []) if "failed" not in s]
    if sizes:
        fig, ax1 = plt.subplots(figsize=(7, 4.5))
        ns = [s["routes"] for s in sizes]
        for key in ("first", "last", "miss"):
            ax1.plot(ns, [s["lookups_ns"][key] for s in sizes], marker="o",
                     label=f"lookup {key}")
        ax1.set_xscale("log")
        ax1.set_xlabel("routes")
        ax1.set_ylabel("ns per lookup")
        ax2 = ax1.twinx()
        ax2.plot(ns, [s["compile_ms"] for s in sizes], "k--", marker="s", label="compile ms")
        ax2.set_yscale("log")
        ax2.set_ylabel("compile ms")
        ax1.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="lower right", fontsize=8)
        ax1.set_title("Router scale")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "router.png"), dpi=90)
        plt.close(fig)
        written.append("router.png")
    return written, ""
