#!/usr/bin/env python3
"""Before/after CPU per message on one private dovecot: every variant once per round, rounds
interleaved (this machine is noisy), a fresh store each run, medians at the end.
usage: interleave.py BUILD_DIR ROUNDS MAILBOXES MESSAGES NAME=MAILSCAN_BINARY[:fetch_text] ...
  e.g. interleave.py build 5 40 200 before=/tmp/old/mailscan text=build/apps/mailscan/mailscan:always \
       headers=build/apps/mailscan/mailscan
RAW=1 also runs the raw header and body clients once at the end."""
import importlib.util, os, secrets, shutil, statistics, sys, tempfile, json, time
spec = importlib.util.spec_from_file_location("bench", os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench.py"))
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
build, rounds, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
variants = [a.split("=", 1) for a in sys.argv[5:]]
env = dict(os.environ); env["MSCAN_BENCH_PASSWORD"] = secrets.token_hex(12)
work = tempfile.mkdtemp(prefix="cpuperf.", dir=tempfile.gettempdir())
os.chmod(work, 0o711)
dv_dir = tempfile.mkdtemp(prefix="dv.", dir=work); os.chmod(dv_dir, 0o711)
dv = bench.Background([f"{build}/bench/harness/mailscan_bench_dovecot", "--mailboxes", str(n), "--messages", str(m),
                       "--message-bytes", "13000", "--prefix", "u", "--dir", dv_dir], "ready", env=env, timeout=1800)
port = int(dv.value("imap"))
res = {v[0]: [] for v in variants}
try:
    # warm-up: dovecot builds its indexes
    bench.raw_run({"raw": f"{build}/bench/harness/mailscan_bench_raw"}, port, "u", n, 8, "headers", env)
    for r in range(rounds):
        for name, spec_ in variants:
            binary, _, ft = spec_.partition(":")
            cfg = os.path.join(work, f"{name}-{r}.toml")
            bench.write_engine_config(cfg, os.path.join(work, f"{name}-{r}-data"), port, [f"u{i}" for i in range(n)],
                                      "MSCAN_BENCH_PASSWORD", 8, 8)
            if ft:
                t = open(cfg).read().replace("[engine]\n", f'[engine]\nfetch_text = "{ft}"\n', 1)
                open(cfg, "w").write(t)
            out = bench.run_measured([binary, "run", "--config", cfg, "--once"], env=env)
            fetched = sum(int(l.split(": OK, ", 1)[1].split()[0]) for l in out["stdout"].decode().splitlines()
                          if ": OK, " in l) if isinstance(out["stdout"], bytes) else \
                      sum(int(l.split(": OK, ", 1)[1].split()[0]) for l in out["stdout"].splitlines() if ": OK, " in l)
            us = out["cpu_s"] / fetched * 1e6 if fetched else float("nan")
            res[name].append({"cpu_us_per_msg": us, "wall_s": out["wall_s"], "fetched": fetched,
                              "msgs_per_s": fetched / out["wall_s"]})
            print(f"round {r} {name}: fetched={fetched} cpu={out['cpu_s']:.3f}s {us:.1f} us/msg wall={out['wall_s']:.2f}s",
                  flush=True)
            shutil.rmtree(os.path.join(work, f"{name}-{r}-data"), ignore_errors=True)
    if os.environ.get("RAW"):
        for mode in ("headers", "fetch"):
            rr = bench.raw_run({"raw": f"{build}/bench/harness/mailscan_bench_raw"}, port, "u", n, 8, mode, env)
            print("raw", mode, {k: rr[k] for k in ("messages", "seconds") if k in rr}, flush=True)
finally:
    dv.stop(); shutil.rmtree(work, ignore_errors=True)
print(json.dumps({k: {"median_cpu_us_per_msg": round(statistics.median(x["cpu_us_per_msg"] for x in v), 1),
                      "median_wall_s": round(statistics.median(x["wall_s"] for x in v), 3),
                      "median_msgs_per_s": round(statistics.median(x["msgs_per_s"] for x in v))}
                  for k, v in res.items()}, indent=1))
