#!/usr/bin/env python3
"""mailscan benchmark suite (standard library only). scripts/bench.sh builds and calls this.

Every engine figure is printed beside a baseline measured in the same run on the same data:
  1. full scan on a private dovecot: `mailscan run --once` vs the raw FETCH client and mbsync
  2. incremental poll of unchanged mailboxes: second `run --once` vs raw LOGIN+STATUS, and
     commands per poll counted by the simulator
  3. scale on the simulator: peak RSS, RSS per mailbox, peak concurrent connections, pass time
  4. backpressure: writer slowed by [engine] write_delay_ms vs unslowed, peak RSS of both
  5. fault storm: 10% of simulator mailboxes failing vs fault-free
Writes bench/results/<date>-<host>.md and .json and prints the Markdown.
`--compare PREVIOUS.json` prints ratios of this run's figures to an earlier report (and with
`--compare-only CURRENT.json` does so without running anything).
"""
import argparse
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the machine
def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "host": socket.gethostname(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_mib": round(mem_kib / 1024),
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def git_head():
    """HEAD, marked when the tree had uncommitted changes to source (what was built and measured)."""
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------------------- processes
ENGINE_TIMEOUT_S = [600.0]  # --engine-timeout


def run_measured(argv, env=None, cwd=None, timeout=None):
    """Runs argv to completion; returns wall seconds, CPU seconds, peak RSS (KiB), exit code,
    stdout, stderr. CPU and peak RSS come from wait4() rusage of the child (ru_maxrss is the
    child's VmHWM); /proc/<pid>/status VmHWM is sampled as well while it runs."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
    hwm = [0]
    timed_out = [False]
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            if timeout and time.monotonic() - start > timeout and p.poll() is None:
                p.kill()  # our own child, by pid: a run that exceeds the budget is reported as such
                timed_out[0] = True
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm[0] = max(hwm[0], int(line.split()[1]))
            except OSError:
                return

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - start
    done.set()
    t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    return {
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "user_s": ru.ru_utime,
        "sys_s": ru.ru_stime,
        "peak_rss_kib": max(ru.ru_maxrss, hwm[0]),
        "rc": p.returncode,
        "timed_out": timed_out[0],
        "stdout": out.read().decode(errors="replace"),
        "stderr": err.read().decode(errors="replace"),
    }


class Background:
    """A long-running helper (simulator, dovecot) that prints a readiness line."""

    def __init__(self, argv, ready_word, env=None, timeout=600):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                  start_new_session=True)
        self.lines = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"{argv[0]} exited before it was ready: {self.p.stderr.read()[-2000:]}")
            self.lines.append(line.strip())
            if line.startswith(ready_word):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[0]} not ready in {timeout}s")

    def value(self, key):
        for l in self.lines:
            parts = l.split(None, 1)
            if parts and parts[0] == key:
                return parts[1] if len(parts) > 1 else ""
        return None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)  # only our own child, by pid
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Simulator(Background):
    def __init__(self, bins, workdir, name, mailboxes, messages, max_connections, message_bytes=4000,
                 faults=None):
        self.report = os.path.join(workdir, f"sim-{name}.json")
        argv = [bins["mailscan"], "simulate", "--listen", "127.0.0.1:0", "--mailboxes", str(mailboxes),
                "--messages", str(messages), "--max-connections", str(max_connections), "--message-bytes",
                str(message_bytes), "--report", self.report, "--seed", "7"]
        for k, v in (faults or {}).items():
            argv += [f"--fault-{k}", str(v)]
        super().__init__(argv, "ready")
        self.port = int(self.value("ready").rsplit(":", 1)[1])

    def finish(self):
        self.stop()
        with open(self.report) as f:
            return json.load(f)


# ---------------------------------------------------------------------------- engine runs
def write_engine_config(path, data_dir, port, users, password_env, max_conn, per_host, write_delay_ms=0,
                        days_back=30, info_logging=False, engine_extra=""):
    base = os.path.dirname(path)
    csv = os.path.join(base, os.path.basename(path) + ".mailboxes.csv")
    with open(csv, "w") as f:
        f.write("user,address,host,port,security,auth,username,password_env,folders,scan\n")
        for u in users:
            f.write(f"{u},{u}@tenant.example,127.0.0.1,{port},none,password,{u},{password_env},INBOX,all\n")
    with open(path, "w") as f:
        f.write("[engine]\n")
        f.write(f'data_dir = "{data_dir}"\nlog_dir = "{data_dir}-logs"\n')
        f.write(f"max_connections = {max_conn}\nmax_connections_per_host = {per_host}\n")
        f.write(f"days_back = {days_back}\nwrite_delay_ms = {write_delay_ms}\n")
        f.write(f"info_logging = {'true' if info_logging else 'false'}\n")
        f.write(engine_extra)
        f.write('internal_domains = ["tenant.example"]\n')
        f.write(f'mailboxes_file = "{csv}"\n\n')
        # A small directory and rules-free config: the matcher still resolves every address.
        for c in range(50):
            f.write(f'[[account]]\nname = "Customer {c} Ltd"\ndomains = ["customer{c}.example"]\n\n')
        for n in range(1000, 1100):
            f.write(f'[[item]]\nkind = "opportunity"\nreference = "OPP-{n}"\n\n')


def engine_run(bins, config, env):
    r = run_measured([bins["mailscan"], "run", "--config", config, "--once"], env=env, timeout=ENGINE_TIMEOUT_S[0])
    if r["timed_out"]:
        raise RuntimeError(f"`mailscan run --once` killed after the {ENGINE_TIMEOUT_S[0]:g} s budget "
                           f"(peak RSS {r['peak_rss_kib'] // 1024} MiB, CPU {r['cpu_s']:.0f} s)")
    fetched = ok = failed = 0
    for line in r["stdout"].splitlines():
        if ": OK, " in line:
            ok += 1
            try:
                fetched += int(line.split(": OK, ", 1)[1].split()[0])
            except ValueError:
                pass
        elif ": Error (" in line:
            failed += 1
    r["fetched"] = fetched
    r["ok_mailboxes"] = ok
    r["failed_mailboxes"] = failed
    if failed and r["rc"] != 0:
        reasons = {}
        for line in r["stdout"].splitlines():
            if ": Error (" in line:
                reason = line.split(": Error (", 1)[1].split(")", 1)[0]
                reasons[reason] = reasons.get(reason, 0) + 1
        r["error_reasons"] = reasons
    # exit 3 with mailbox lines = some mailbox failed (expected in the fault storm)
    if r["rc"] < 0 or r["rc"] not in (0, 3) or (ok == 0 and failed == 0):
        how = f"signal {-r['rc']}" if r["rc"] < 0 else f"exit code {r['rc']}"
        raise RuntimeError(f"`mailscan run --once` ended with {how} after {ok} OK / {failed} failed "
                           f"mailbox(es): {r['stderr'].strip()[-300:]}")
    return r


def log_lines(log_dir):
    """Every line of the engine's daily logs in log_dir, oldest file first."""
    try:
        names = sorted(os.listdir(log_dir))
    except OSError:
        return
    for name in names:
        with open(os.path.join(log_dir, name), errors="replace") as f:
            yield from f


def log_events(log_dir):
    """The engine log's events (info_logging) from `run_started` on: [(seconds since it, event,
    user, host, detail)]."""
    t0 = None
    out = []
    for line in log_lines(log_dir):
        parts = line.split(" ", 6)
        if len(parts) < 7:
            continue
        try:
            ts = datetime.datetime.fromisoformat(parts[0]).timestamp()
        except ValueError:
            continue
        fields = dict(p.split("=", 1) for p in parts[2:6] if "=" in p)
        ev = fields.get("event", "")
        if ev == "run_started" and t0 is None:
            t0 = ts
        if t0 is not None:
            detail = parts[6].rstrip("\n")
            detail = detail[len("detail="):] if detail.startswith("detail=") else detail
            out.append((ts - t0, ev, fields.get("user", "-"), fields.get("host", "-"), detail.strip('"')))
    return out


def completion_times(log_dir, events=None):
    """Seconds from `run_started` to each mailbox's first scan_* event: {user: (seconds, event)}."""
    done = {}
    for t, ev, user, _, _ in events if events is not None else log_events(log_dir):
        if ev.startswith("scan_") and user != "-" and user not in done:
            done[user] = (t, ev)
    return done


def scan_window_s(log_dir):
    """Seconds from `run_started` (store open, actors up) to the last mailbox's first scan_*
    event: the scan itself, without process start-up and shutdown."""
    done = completion_times(log_dir)
    return max((t for t, _ in done.values()), default=0)


def lease_ms(events):
    """Each mailbox's scan latency, lease to done, from its first scan_ok: {user: ms}."""
    out = {}
    for _, ev, user, _, detail in events:
        if ev == "scan_ok" and user not in out and "lease_ms=" in detail:
            out[user] = int(detail.split("lease_ms=", 1)[1].split()[0])
    return out


def percentiles(xs):
    return {f"p{int(q * 100)}": percentile(xs, q) for q in (0.5, 0.9, 0.99)}


def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, int(round(q * len(xs))) - 1))]


def slim(r):
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
            if k not in ("stdout", "stderr")}


def raw_run(bins, port, prefix, count, connections, mode, env, first=0):
    r = run_measured([bins["raw"], "--port", str(port), "--prefix", prefix, "--count", str(count),
                      "--first", str(first), "--connections", str(connections), "--mode", mode], env=env)
    try:
        res = json.loads(r["stdout"])
    except ValueError:
        raise RuntimeError(f"raw client failed (rc {r['rc']}): {r['stderr'][-500:]}")
    res["process_cpu_s"] = r["cpu_s"]
    res["wall_s"] = r["wall_s"]
    return res


def group_cpu_s(pgid):
    """CPU seconds of a process group: live members' utime+stime plus what the group leader
    collected from reaped children (cutime+cstime). Dovecot's master reaps its imap processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        if int(fields[2]) != pgid:  # field 5 (pgrp) counted from the state field
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if int(d) == pgid:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / tick


def ratio(a, b):
    return round(a / b, 3) if b else None


# ---------------------------------------------------------------------------- scenarios
class TwinDovecot:
    """A private dovecot seeded with 2n mailboxes (`prefix`0..2n-1) of m messages: the second n
    get the raw client's BODYSTRUCTURE request while dovecot has not computed (and cached) it,
    as the first n are when the engine scans them. server_cpu(fn) adds dovecot's CPU to fn()'s
    result."""

    def __init__(self, name, args, bins, work, env, n, m, prefix):
        log(f"{name}: seeding {n} mailboxes x {m} messages of ~{args.message_bytes} B")
        t0 = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix=f"dv-{name}.", dir=work)
        os.chmod(self.dir, 0o711)
        self.dv = Background([bins["dovecot"], "--mailboxes", str(2 * n), "--messages", str(m), "--message-bytes",
                              str(args.message_bytes), "--prefix", prefix, "--dir", self.dir], "ready", env=env,
                             timeout=1800)
        self.seed_s = time.monotonic() - t0
        self.res = {"mailboxes": n, "messages_per_mailbox": m, "message_bytes": args.message_bytes,
                    "connections": args.connections, "seed_s": round(self.seed_s, 1)}
        self.prefix = prefix
        self.port = int(self.dv.value("imap"))
        self.pid = int(self.dv.value("pid"))

    def warm_up(self, bins, env):
        """Raw BODY.PEEK[HEADER] over both halves (dovecot builds its indexes): the first half's
        run, with dovecot's CPU, is the header baseline."""
        n, c = self.res["mailboxes"], self.res["connections"]
        first = self.server_cpu(lambda: raw_run(bins, self.port, self.prefix, n, c, "headers", env))
        raw_run(bins, self.port, self.prefix, n, c, "headers", env, first=n)
        return first

    def server_cpu(self, fn):
        before = group_cpu_s(self.pid)
        r = fn()
        r["dovecot_cpu_s"] = round(group_cpu_s(self.pid) - before, 3)
        return r

    def stop(self):
        self.dv.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def scenario_dovecot(args, bins, work, env, pw_env):
    n, m, c = args.dovecot_mailboxes, args.dovecot_messages, args.connections
    tw = TwinDovecot("dovecot", args, bins, work, env, n, m, "u")
    port, server_cpu, res = tw.port, tw.server_cpu, tw.res
    try:
        total = n * m
        log("dovecot: raw client, headers (also builds dovecot's indexes: the warm-up)")
        res["raw_headers"] = tw.warm_up(bins, env)
        log("dovecot: raw client, full bodies")
        raw = server_cpu(lambda: raw_run(bins, port, "u", n, c, "fetch", env))
        res["raw_fetch"] = raw
        log("dovecot: mailscan run --once (first scan)")
        cfg = os.path.join(work, "dovecot.toml")
        write_engine_config(cfg, os.path.join(work, "dovecot-data"), port, [f"u{i}" for i in range(n)], pw_env,
                            c, c, info_logging=True)
        eng = server_cpu(lambda: engine_run(bins, cfg, env))
        eng["scan_window_s"] = scan_window_s(os.path.join(work, "dovecot-data-logs"))
        res["engine_first"] = slim(eng)
        # The config has no rule that reads message text: the engine takes the header path
        # (headers + BODYSTRUCTURE). The same first scan with the text parts, for comparison.
        res["engine_fetch_path"] = "headers"
        log("dovecot: mailscan run --once (first scan, fetch_text = \"always\": the text path)")
        cfg_text = os.path.join(work, "dovecot-text.toml")
        write_engine_config(cfg_text, os.path.join(work, "dovecot-text-data"), port, [f"u{i}" for i in range(n)],
                            pw_env, c, c)
        with open(cfg_text) as f:
            text = f.read().replace("[engine]\n", '[engine]\nfetch_text = "always"\n', 1)
        with open(cfg_text, "w") as f:
            f.write(text)
        eng_text = server_cpu(lambda: engine_run(bins, cfg_text, env))
        res["engine_first_text_path"] = slim(eng_text)
        # The engine's own header-path request from the raw client, on the other n mailboxes: dovecot
        # computes BODYSTRUCTURE for them now (it parses each body once, then answers from its cache),
        # as it did for the engine. The fair baseline for the header path.
        log("dovecot: raw client, the engine's header-path items (BODYSTRUCTURE + headers)")
        res["raw_structure"] = server_cpu(lambda: raw_run(bins, port, "u", n, c, "structure", env, first=n))
        log("dovecot: mbsync into maildirs")
        res["mbsync"] = server_cpu(lambda: mbsync_run(args, port, n, c, work, env))
        log("dovecot: incremental: mailscan run --once again, and raw LOGIN+STATUS")
        eng2 = server_cpu(lambda: engine_run(bins, cfg, env))
        res["engine_second"] = slim(eng2)
        res["raw_status"] = server_cpu(lambda: raw_run(bins, port, "u", n, c, "status", env))
        # The fixed cost of a run (start-up, store open, logins, STATUS, shutdown) with nothing to fetch and,
        # unlike the second run, no write-ahead log of the first to replay: subtracted from the first run's
        # CPU it leaves the marginal CPU per message.
        log("dovecot: fixed cost: mailscan run --once a third time")
        eng3 = engine_run(bins, cfg, env)
        res["engine_third"] = slim(eng3)
    finally:
        tw.stop()
    # figures
    eng_mps = eng["fetched"] / eng["wall_s"] if eng["wall_s"] else 0
    def raw_mps_of(r):
        return r["messages"] / r["seconds"] if r["seconds"] else 0
    raw_mps = raw_mps_of(raw)
    hdr = res["raw_headers"]
    hdr_mps = raw_mps_of(hdr)
    rs = res["raw_structure"]
    rs_mps = raw_mps_of(rs)
    mb = res["mbsync"]
    mb_mps = mb.get("messages", 0) / mb["wall_s"] if mb.get("wall_s") else 0
    st = res["raw_status"]
    res["figures"] = {
        "engine_messages": eng["fetched"],
        "expected_messages": total,
        "engine_msgs_per_s": round(eng_mps),
        "raw_fetch_msgs_per_s": round(raw_mps),
        "raw_fetch_mb_per_s": round(raw["bytes"] / raw["seconds"] / 1e6, 1) if raw["seconds"] else 0,
        "raw_headers_msgs_per_s": round(hdr_mps),
        "mbsync_msgs_per_s": round(mb_mps),
        "raw_structure_msgs_per_s": round(rs_mps),
        "engine_vs_raw_structure": ratio(eng_mps, rs_mps),
        "engine_window_msgs_per_s": round(eng["fetched"] / eng["scan_window_s"]) if eng.get("scan_window_s") else None,
        "engine_window_vs_raw_structure":
            ratio(eng["fetched"] / eng["scan_window_s"], rs_mps) if eng.get("scan_window_s") else None,
        "dovecot_cpu_us_per_msg_raw_headers": round(hdr["dovecot_cpu_s"] / total * 1e6, 1),
        "dovecot_cpu_us_per_msg_raw_structure": round(rs["dovecot_cpu_s"] / total * 1e6, 1),
        "engine_vs_raw_fetch": ratio(eng_mps, raw_mps),
        "engine_vs_raw_headers": ratio(eng_mps, hdr_mps),
        "engine_vs_mbsync": ratio(eng_mps, mb_mps),
        "engine_cpu_us_per_msg": round(eng["cpu_s"] / eng["fetched"] * 1e6, 1) if eng["fetched"] else None,
        "engine_fixed_cpu_s": round(eng3["cpu_s"], 3),
        "engine_marginal_cpu_us_per_msg":
            round((eng["cpu_s"] - eng3["cpu_s"]) / eng["fetched"] * 1e6, 1) if eng["fetched"] else None,
        "engine_fetch_path": res["engine_fetch_path"],
        "engine_text_path_msgs_per_s": round(eng_text["fetched"] / eng_text["wall_s"]) if eng_text["wall_s"] else 0,
        "engine_text_path_cpu_us_per_msg":
            round(eng_text["cpu_s"] / eng_text["fetched"] * 1e6, 1) if eng_text["fetched"] else None,
        "engine_text_path_vs_raw_fetch": ratio(eng_text["fetched"] / eng_text["wall_s"] if eng_text["wall_s"] else 0,
                                               raw_mps),
        "dovecot_cpu_us_per_msg_engine_text_path": round(eng_text["dovecot_cpu_s"] / total * 1e6, 1),
        "raw_fetch_cpu_us_per_msg": round(raw["process_cpu_s"] / raw["messages"] * 1e6, 1) if raw["messages"] else None,
        "engine_peak_rss_mib": round(eng["peak_rss_kib"] / 1024, 1),
        "dovecot_cpu_us_per_msg_engine": round(eng["dovecot_cpu_s"] / total * 1e6, 1),
        "dovecot_cpu_us_per_msg_raw_fetch": round(raw["dovecot_cpu_s"] / total * 1e6, 1),
        "dovecot_cpu_ms_per_poll_engine": round(eng2["dovecot_cpu_s"] / n * 1e3, 3),
        "dovecot_cpu_ms_per_poll_raw_status": round(st["dovecot_cpu_s"] / n * 1e3, 3),
        "engine_polls_per_s": round(n / eng2["wall_s"], 1) if eng2["wall_s"] else 0,
        "engine_second_fetched": eng2["fetched"],
        "raw_status_polls_per_s": round(st["mailboxes"] / st["seconds"], 1) if st["seconds"] else 0,
        "engine_polls_vs_raw_status": ratio(n / eng2["wall_s"], st["mailboxes"] / st["seconds"]),
        "engine_second_cpu_ms_per_poll": round(eng2["cpu_s"] / n * 1e3, 3),
    }
    return res


def scenario_deep(args, bins, work, env, pw_env):
    """The full scan of a deep corpus: as many mailboxes as connections, each with thousands of
    messages (section 1 is the wide one). Same baselines: the raw client with the engine's
    header-path items on a twin set of mailboxes, dovecot warmed up on both by a header run."""
    n, m, c = args.connections, args.deep_messages, args.connections
    tw = TwinDovecot("deep", args, bins, work, env, n, m, "d")
    port, server_cpu, res = tw.port, tw.server_cpu, tw.res
    try:
        total = n * m
        log("deep: raw client, headers (warm-up of both halves)")
        tw.warm_up(bins, env)
        log("deep: mailscan run --once (first scan)")
        cfg = os.path.join(work, "deep.toml")
        write_engine_config(cfg, os.path.join(work, "deep-data"), port, [f"d{i}" for i in range(n)], pw_env, c, c,
                            info_logging=True)
        eng = server_cpu(lambda: engine_run(bins, cfg, env))
        eng["scan_window_s"] = scan_window_s(os.path.join(work, "deep-data-logs"))
        res["engine_first"] = slim(eng)
        log("deep: raw client, the engine's header-path items")
        rs = server_cpu(lambda: raw_run(bins, port, "d", n, c, "structure", env, first=n))
        res["raw_structure"] = rs
    finally:
        tw.stop()
    eng_mps = eng["fetched"] / eng["wall_s"] if eng["wall_s"] else 0
    rs_mps = rs["messages"] / rs["seconds"] if rs["seconds"] else 0
    res["figures"] = {
        "engine_messages": eng["fetched"], "expected_messages": total,
        "engine_msgs_per_s": round(eng_mps), "raw_structure_msgs_per_s": round(rs_mps),
        "engine_vs_raw_structure": ratio(eng_mps, rs_mps),
        "engine_window_msgs_per_s": round(eng["fetched"] / eng["scan_window_s"]) if eng.get("scan_window_s") else None,
        "engine_window_vs_raw_structure":
            ratio(eng["fetched"] / eng["scan_window_s"], rs_mps) if eng.get("scan_window_s") else None,
        "engine_cpu_us_per_msg": round(eng["cpu_s"] / eng["fetched"] * 1e6, 1) if eng["fetched"] else None,
        "raw_cpu_us_per_msg": round(rs["process_cpu_s"] / rs["messages"] * 1e6, 1) if rs["messages"] else None,
        "engine_peak_rss_mib": round(eng["peak_rss_kib"] / 1024, 1),
        "dovecot_cpu_us_per_msg_engine": round(eng["dovecot_cpu_s"] / total * 1e6, 1),
        "dovecot_cpu_us_per_msg_raw_structure": round(rs["dovecot_cpu_s"] / total * 1e6, 1),
    }
    return res


def mbsync_run(args, port, n, c, work, env):
    mbsync = shutil.which("mbsync")
    if not mbsync:
        return {"skipped": "mbsync (isync) not installed"}
    base = tempfile.mkdtemp(prefix="mbsync.", dir=work)
    pwfile = os.path.join(base, "pw")
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, env["MSCAN_BENCH_PASSWORD"].encode())
    os.close(fd)
    procs = []
    groups = [list(range(i, n, c)) for i in range(min(c, n))]
    start = time.monotonic()
    for gi, g in enumerate(groups):
        rc = os.path.join(base, f"mbsyncrc.{gi}")
        with open(rc, "w") as f:
            for i in g:
                u = f"u{i}"
                md = os.path.join(base, u)
                os.makedirs(md, exist_ok=True)
                f.write(f"IMAPAccount {u}\nHost 127.0.0.1\nPort {port}\nUser {u}\nPassCmd \"cat {pwfile}\"\n"
                        f"SSLType None\nAuthMechs LOGIN\n\n"
                        f"IMAPStore {u}-far\nAccount {u}\n\n"
                        f"MaildirStore {u}-near\nPath {md}/\nInbox {md}/INBOX\n\n"
                        f"Channel {u}\nFar :{u}-far:\nNear :{u}-near:\nPatterns INBOX\nSync Pull\nCreate Near\n"
                        f"SyncState *\n\n")
        procs.append(subprocess.Popen([mbsync, "-q", "-c", rc, "-a"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    cpu = 0.0
    errors = []
    for p in procs:
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        cpu += ru.ru_utime + ru.ru_stime
        if p.returncode != 0:
            errors.append(p.stderr.read()[-300:])
    wall = time.monotonic() - start
    msgs = 0
    for root, dirs, files in os.walk(base):
        if os.path.basename(root) in ("cur", "new"):
            msgs += len(files)
    shutil.rmtree(base, ignore_errors=True)
    r = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "messages": msgs, "processes": len(procs)}
    if errors:
        r["errors"] = errors[:3]
    return r


def scenario_scale(args, bins, work, env):
    per_host = args.per_host
    sizes = [args.scale_small] + args.scale_sizes
    res = {"per_host_limit": per_host, "max_connections": args.max_connections,
           "messages_per_mailbox": args.scale_messages, "runs": []}
    for size in sizes:
        log(f"scale: {size} simulator mailboxes x {args.scale_messages}")
        sim = Simulator(bins, work, f"scale{size}", size, args.scale_messages, max(4 * per_host, 64))
        try:
            cfg = os.path.join(work, f"scale{size}.toml")
            write_engine_config(cfg, os.path.join(work, f"scale{size}-data"), sim.port,
                                [f"sim{i}" for i in range(size)], "MSCAN_SIM_PASSWORD", args.max_connections,
                                per_host)
            try:
                r = engine_run(bins, cfg, env)
            except RuntimeError as e:  # keep the other sizes' figures
                log(f"scale {size}: {e}")
                res.setdefault("errors", []).append(f"{size} mailboxes: {e}")
                continue
        finally:
            rep = sim.finish()
            shutil.rmtree(os.path.join(work, f"scale{size}-data"), ignore_errors=True)
        res["runs"].append({
            "mailboxes": size, "pass_s": round(r["wall_s"], 2), "peak_rss_mib": round(r["peak_rss_kib"] / 1024, 1),
            "cpu_s": round(r["cpu_s"], 2), "fetched": r["fetched"], "ok": r["ok_mailboxes"],
            "failed": r["failed_mailboxes"], "sim_peak_connections": rep.get("peak_connections"),
            "sim_refused": rep.get("refused"), "sim_logins": rep.get("logins"),
            "mailboxes_per_s": round(size / r["wall_s"], 1) if r["wall_s"] else 0,
        })
    if not res["runs"]:
        raise RuntimeError("; ".join(res.get("errors", ["no run finished"])))
    small = res["runs"][0]
    small["within_per_host_limit"] = (small["sim_peak_connections"] or 0) <= per_host
    for run in res["runs"][1:]:
        d_rss = (run["peak_rss_mib"] - small["peak_rss_mib"]) * 1024
        run["rss_kib_per_mailbox_over_small"] = round(d_rss / (run["mailboxes"] - small["mailboxes"]), 2)
        run["within_per_host_limit"] = (run["sim_peak_connections"] or 0) <= per_host
    return res


def scenario_incremental_sim(args, bins, work, env):
    """Commands the server receives per poll of unchanged mailboxes (simulator's counters)."""
    n, m = args.poll_mailboxes, args.poll_messages
    log(f"incremental (simulator): {n} mailboxes x {m}: first scan, then a counted second one")
    cfg = os.path.join(work, "poll.toml")
    data = os.path.join(work, "poll-data")
    sim = Simulator(bins, work, "poll1", n, m, 1000)
    try:
        write_engine_config(cfg, data, sim.port, [f"sim{i}" for i in range(n)], "MSCAN_SIM_PASSWORD",
                            args.max_connections, args.per_host)
        first = engine_run(bins, cfg, env)
    finally:
        rep1 = sim.finish()
    sim = Simulator(bins, work, "poll2", n, m, 1000)  # same seed: same UIDVALIDITY and content
    try:
        write_engine_config(cfg, data, sim.port, [f"sim{i}" for i in range(n)], "MSCAN_SIM_PASSWORD",
                            args.max_connections, args.per_host)
        second = engine_run(bins, cfg, env)
    finally:
        rep2 = sim.finish()
    raw_sim = Simulator(bins, work, "poll-raw", n, m, 1000)
    try:
        raw = raw_run(bins, raw_sim.port, "sim", n, args.per_host, "status",
                      dict(env, MSCAN_BENCH_PASSWORD="sim"))
    finally:
        rep3 = raw_sim.finish()
    shutil.rmtree(data, ignore_errors=True)
    cmds2 = sum(rep2.get("commands", {}).values())
    cmds_raw = sum(rep3.get("commands", {}).values())
    return {
        "mailboxes": n, "messages_per_mailbox": m,
        "first": slim(first), "second": slim(second),
        "first_commands": rep1.get("commands"), "second_commands": rep2.get("commands"),
        "raw_status_commands": rep3.get("commands"),
        "figures": {
            "second_fetched": second["fetched"],
            "commands_per_poll": round(cmds2 / n, 2),
            "commands_per_poll_excluding_logout": round((cmds2 - rep2.get("commands", {}).get("LOGOUT", 0)) / n, 2),
            "logins_per_poll": round(rep2.get("logins", 0) / n, 2),
            "raw_status_commands_per_poll": round(cmds_raw / n, 2),
            "engine_polls_per_s": round(n / second["wall_s"], 1),
            "raw_status_polls_per_s": round(n / raw["seconds"], 1) if raw["seconds"] else 0,
            "engine_polls_vs_raw": ratio(n / second["wall_s"], n / raw["seconds"]) if raw["seconds"] else None,
        },
    }


def scan_events(log_dir):
    """(timestamp, user, kept) of every scan_ok in the engine's log (info_logging)."""
    out = []
    for line in log_lines(log_dir):
        if "event=scan_ok" not in line:
            continue
        parts = line.split()
        try:
            ts = datetime.datetime.fromisoformat(parts[0]).timestamp()
        except (ValueError, IndexError):
            continue
        user = next((p[5:] for p in parts if p.startswith("user=")), "-")
        out.append((ts, user, "session=kept" in line))
    return out


def engine_window(bins, cfg, env, log_dir, window_s, warmup_s, server_cpu_of=None):
    """Runs `mailscan run` (not --once) for warmup + window seconds, stops it with SIGTERM and
    counts the scan_ok events whose time falls in the window: polls/s of a long-running engine."""
    p = subprocess.Popen([bins["mailscan"], "run", "--config", cfg], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env)
    time.sleep(warmup_s)
    t0 = time.time()
    cpu0 = server_cpu_of() if server_cpu_of else 0
    time.sleep(window_s)
    t1 = time.time()
    cpu1 = server_cpu_of() if server_cpu_of else 0
    p.send_signal(signal.SIGTERM)  # our own child, by pid: the clean stop (kept sessions LOGOUT)
    t_stop = time.monotonic()
    _, status, ru = os.wait4(p.pid, 0)
    stop_s = time.monotonic() - t_stop
    rc = os.waitstatus_to_exitcode(status)
    ev = [e for e in scan_events(log_dir) if t0 <= e[0] < t1]
    polls = len(ev)
    return {"rc": rc, "window_s": round(t1 - t0, 2), "polls": polls, "kept_polls": sum(1 for e in ev if e[2]),
            "mailboxes_polled": len(set(e[1] for e in ev)), "polls_per_s": round(polls / (t1 - t0), 1),
            "engine_cpu_s": round(ru.ru_utime + ru.ru_stime, 2), "sigterm_exit_s": round(stop_s, 2),
            "server_cpu_s_window": round(cpu1 - cpu0, 3), "stderr": p.stderr.read().decode(errors="replace")[-300:]}


def scenario_incremental_kept(args, bins, work, env, pw_env):
    """Kept sessions: polls/s of a long-running `mailscan run` (poll_interval_s = 1) on a private
    dovecot, (a) with every mailbox within the connection budget (all kept) and (b) with more
    mailboxes than the budget, beside the raw LOGIN+STATUS+LOGOUT client in the same run; server
    commands per poll counted by the simulator for case (a)."""
    n, c, win = args.kept_mailboxes, args.connections, args.kept_window
    over = n * 2
    log(f"incremental (kept sessions): dovecot with {over} mailboxes x 5 small messages")
    dv_dir = tempfile.mkdtemp(prefix="dvk.", dir=work)
    os.chmod(dv_dir, 0o711)
    dv = Background([bins["dovecot"], "--mailboxes", str(over), "--messages", "5", "--message-bytes", "2000",
                     "--prefix", "u", "--dir", dv_dir], "ready", env=env, timeout=1800)
    port, dv_pid = int(dv.value("imap")), int(dv.value("pid"))
    dv_log = os.path.join(dv.value("root"), "dovecot.log")

    def logins():
        try:
            with open(dv_log, errors="replace") as f:
                return sum(1 for line in f if "Login: user=" in line)
        except OSError:
            return 0
    res = {"mailboxes_within_budget": n, "mailboxes_over_budget": over, "raw_connections": c, "window_s": win,
           "poll_interval_s": 1}
    try:
        # Warm-up (dovecot's indexes) and the baseline, twice: before and after the engine runs.
        raw_run(bins, port, "u", over, c, "status", env)
        st = raw_run(bins, port, "u", over, c, "status", env)
        res["raw_status_before"] = {"polls_per_s": round(st["mailboxes"] / st["seconds"], 1)}
        for case, users, budget, keep in (("within_budget", n, n, n), ("over_budget", over, c, c)):
            cfg = os.path.join(work, f"kept-{case}.toml")
            data = os.path.join(work, f"kept-{case}-data")
            write_engine_config(cfg, data, port, [f"u{i}" for i in range(users)], pw_env, budget, budget,
                                info_logging=True,
                                engine_extra=f"poll_interval_s = 1\nkeep_sessions = {keep}\n")
            log(f"kept ({case}): {users} mailboxes, max_connections {budget}, keep_sessions {keep}: "
                f"first scan, then `mailscan run` for {win} s")
            engine_run(bins, cfg, env)  # the first scan: checkpoints
            l0 = logins()
            # Warm-up: every mailbox's first poll of the run (a fresh LOGIN) is over before the window.
            r = engine_window(bins, cfg, env, data + "-logs", win, 6, lambda: group_cpu_s(dv_pid))
            r["dovecot_logins_whole_run"] = logins() - l0
            r["dovecot_cpu_ms_per_poll"] = round(r["server_cpu_s_window"] / r["polls"] * 1e3, 3) if r["polls"] else None
            r["demand_polls_per_s"] = users  # every mailbox due once per second
            res[case] = r
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(data + "-logs", ignore_errors=True)
        before = group_cpu_s(dv_pid)
        st = raw_run(bins, port, "u", over, c, "status", env)
        server_cpu_raw = group_cpu_s(dv_pid) - before
        res["raw_status_after"] = {"polls_per_s": round(st["mailboxes"] / st["seconds"], 1),
                                   "dovecot_cpu_ms_per_poll": round(server_cpu_raw / over * 1e3, 3)}
    finally:
        dv.stop()
        shutil.rmtree(dv_dir, ignore_errors=True)
    # Server commands per poll: the same within-budget case against the simulator's counters.
    log(f"kept (simulator): {n} mailboxes, commands per poll over {win} s")
    sim = Simulator(bins, work, "kept", n, 5, max(n, 64))
    cfg = os.path.join(work, "kept-sim.toml")
    data = os.path.join(work, "kept-sim-data")
    try:
        write_engine_config(cfg, data, sim.port, [f"sim{i}" for i in range(n)], "MSCAN_SIM_PASSWORD", n, n,
                            info_logging=True, engine_extra=f"poll_interval_s = 1\nkeep_sessions = {n}\n")
        sim_run = engine_window(bins, cfg, env, data + "-logs", win, 3)
        all_polls = len(scan_events(data + "-logs"))
    finally:
        rep_sim = sim.finish()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(data + "-logs", ignore_errors=True)
    cmds = rep_sim.get("commands", {})
    session_cmds = ("LOGIN", "AUTHENTICATE", "CAPABILITY", "ID", "ENABLE", "LOGOUT")
    per_poll = sum(v for k, v in cmds.items() if k not in session_cmds)
    res["simulator"] = {"polls_whole_run": all_polls, "commands": cmds, "logins": rep_sim.get("logins"),
                        "window": {k: v for k, v in sim_run.items() if k != "stderr"}}
    raw_pps = (res["raw_status_before"]["polls_per_s"] + res["raw_status_after"]["polls_per_s"]) / 2
    a, b = res["within_budget"], res["over_budget"]
    res["figures"] = {
        "raw_status_polls_per_s": round(raw_pps, 1),
        "kept_within_budget_polls_per_s": a["polls_per_s"],
        "kept_within_budget_vs_raw": ratio(a["polls_per_s"], raw_pps),
        "kept_within_budget_kept_fraction": ratio(a["kept_polls"], a["polls"]),
        "kept_over_budget_polls_per_s": b["polls_per_s"],
        "kept_over_budget_vs_raw": ratio(b["polls_per_s"], raw_pps),
        "kept_over_budget_kept_fraction": ratio(b["kept_polls"], b["polls"]),
        "sim_commands_per_poll": round(per_poll / all_polls, 2) if all_polls else None,
        # After the first scan (EXAMINE, SEARCH, FETCH, CLOSE once per mailbox) nothing changed:
        # what every later poll cost.
        "sim_commands_per_poll_after_first": round(
            (per_poll - sum(cmds.get(x, 0) for x in ("EXAMINE", "SELECT", "SEARCH", "FETCH", "CLOSE", "UNSELECT")))
            / (all_polls - n), 2) if all_polls > n else None,
        "sim_logins_per_poll": round((rep_sim.get("logins") or 0) / all_polls, 3) if all_polls else None,
        "dovecot_cpu_ms_per_poll_kept": a["dovecot_cpu_ms_per_poll"],
        "dovecot_cpu_ms_per_poll_raw_status": res["raw_status_after"]["dovecot_cpu_ms_per_poll"],
    }
    return res


def scenario_backpressure(args, bins, work, env):
    n, m = args.bp_mailboxes, args.bp_messages
    res = {"mailboxes": n, "messages_per_mailbox": m, "attempts": [],
           "max_inflight_mb": args.bp_inflight_mb if args.bp_inflight_mb is not None else "default (64)"}
    # The writer group-commits, so a small per-commit delay may just make batches bigger: raise
    # the delay until the pass is at least ~5x slower (aiming at 10x), at most four tries.
    plan = [("unslowed", 0)] + [("slowed", args.write_delay_ms * k) for k in (1, 5, 25, 100)]
    for name, delay in plan:
        if name == "slowed" and "slowed" in res and res["slowed"]["pass_s"] >= 5 * res["unslowed"]["pass_s"]:
            break
        log(f"backpressure: {n} x {m}, write_delay_ms = {delay}")
        sim = Simulator(bins, work, f"bp-{name}", n, m, 1000)
        data = os.path.join(work, f"bp-{name}-data")
        try:
            cfg = os.path.join(work, f"bp-{name}.toml")
            extra = f"max_inflight_mb = {args.bp_inflight_mb}\n" if args.bp_inflight_mb is not None else ""
            write_engine_config(cfg, data, sim.port, [f"sim{i}" for i in range(n)], "MSCAN_SIM_PASSWORD",
                                args.max_connections, args.per_host, write_delay_ms=delay, engine_extra=extra)
            r = engine_run(bins, cfg, env)
        finally:
            sim.finish()
        shutil.rmtree(data, ignore_errors=True)
        res[name] = {"pass_s": round(r["wall_s"], 2), "peak_rss_mib": round(r["peak_rss_kib"] / 1024, 1),
                     "fetched": r["fetched"], "cpu_s": round(r["cpu_s"], 2), "ok": r["ok_mailboxes"],
                     "write_delay_ms": delay}
        res["attempts"].append(res[name])
    res["write_delay_ms"] = res["slowed"]["write_delay_ms"]
    u, s = res["unslowed"], res["slowed"]
    res["figures"] = {
        "slowdown": ratio(s["pass_s"], u["pass_s"]),
        "peak_rss_ratio": ratio(s["peak_rss_mib"], u["peak_rss_mib"]),
        "within_10_percent": bool(u["peak_rss_mib"]) and s["peak_rss_mib"] <= 1.10 * u["peak_rss_mib"],
    }
    return res


def scenario_faults(args, bins, work, env):
    """Two `run --once` passes on one store per case (fault-free, storm), each against the same
    simulator: pass 1 is a fresh store (every fault is new to the engine); pass 2 is the steady
    state (the store knows which mailboxes are slow, storage::mailbox_state::slow, and the
    healthy ones have no new mail). Each pass is compared with the fault-free run's same pass."""
    n, m = args.fault_mailboxes, args.fault_messages
    faults = {"wrong-password": 0.03, "disconnect": 0.03, "slow": 0.02, "uidvalidity": 0.02}
    res = {"mailboxes": n, "messages_per_mailbox": m, "fault_fractions": faults,
           "slow_response_ms": args.slow_response_ms if args.slow_response_ms is not None else "the engine's default",
           "passes": "pass1 = first `run --once` on a fresh store; pass2 = a second `run --once` on that store"}
    healthy_lease, healthy_done, faulty = {}, {}, set()
    runs = [(name, p) for name in ("fault_free", "storm") for p in (1, 2)]
    sims = {}
    try:
        for name, plan in (("fault_free", None), ("storm", faults)):
            sims[name] = Simulator(bins, work, f"faults-{name}", n, m, 1000, faults=plan)
            data = os.path.join(work, f"faults-{name}-data")
            cfg = os.path.join(work, f"faults-{name}.toml")
            write_engine_config(cfg, data, sims[name].port, [f"sim{i}" for i in range(n)], "MSCAN_SIM_PASSWORD",
                                args.max_connections, args.per_host, info_logging=True,
                                engine_extra="" if args.slow_response_ms is None
                                else f"slow_response_ms = {args.slow_response_ms}\n")
            for pass_no in (1, 2):
                key = f"{name}_pass{pass_no}"
                log(f"fault storm: {n} x {m}, {name}, pass {pass_no}")
                r = engine_run(bins, cfg, env)
                events = log_events(data + "-logs")
                shutil.rmtree(data + "-logs", ignore_errors=True)  # each pass reads its own log
                done = completion_times(None, events)
                ok_times = sorted(t for t, ev in done.values() if ev == "scan_ok")
                healthy_lease[key] = lease_ms(events)
                healthy_done[key] = done
                healthy = int(n * 0.9)  # the fault plan hits ~10%: the first 90% to finish OK are "the others"
                res[key] = {"ok_p50_s": percentile(ok_times, 0.5) and round(percentile(ok_times, 0.5), 3),
                            "healthy_90pct_done_s": round(ok_times[healthy - 1], 3) if len(ok_times) >= healthy > 0 else None,
                            "logged_mailboxes": len(done),
                            "pass_s": round(r["wall_s"], 2), "fetched": r["fetched"], "ok": r["ok_mailboxes"],
                            "failed": r["failed_mailboxes"], "error_reasons": r.get("error_reasons", {}),
                            "peak_rss_mib": round(r["peak_rss_kib"] / 1024, 1), "rc": r["rc"],
                            "slow_restored": sum(int(e[4].split("slow=", 1)[1].split()[0]) for e in events
                                                 if e[1] == "stored_state_restored" and "slow=" in e[4]),
                            "slow_marked": sum(1 for e in events if e[1] == "mailbox_slow"),
                            "slow_lane_yields": sum(1 for e in events if e[1] == "lease_yielded" and "slow lane" in e[4])}
            shutil.rmtree(data, ignore_errors=True)
    finally:
        reps = {name: sim.finish() for name, sim in sims.items()}
    # The storm's faulty users (the fault-free run measures the same healthy ones).
    faulty = {f"sim{u}" for users in reps.get("storm", {}).get("fault_users", {}).values() for u in users}
    for name in ("fault_free", "storm"):
        res[name] = {"sim_peak_connections": reps.get(name, {}).get("peak_connections"),
                     "sim_failed_logins": reps.get(name, {}).get("failed_logins")}
    # Per-scan latency (lease -> done) of the healthy mailboxes: those with no fault in the storm.
    for key in (f"{name}_pass{p}" for name, p in runs):
        xs = [v for u, v in healthy_lease[key].items() if u not in faulty]
        res[key]["healthy_lease_ms"] = percentiles(xs)
        res[key]["healthy_scans"] = len(xs)
        ts = [t for u, (t, ev) in healthy_done[key].items() if u not in faulty and ev == "scan_ok"]
        res[key]["healthy_done_s"] = {k: v and round(v, 3) for k, v in percentiles(ts).items()}
    res["figures"] = {}
    for p in (1, 2):
        ff, st = res[f"fault_free_pass{p}"], res[f"storm_pass{p}"]
        res["figures"][f"pass{p}"] = {
            "pass_time_ratio": ratio(st["pass_s"], ff["pass_s"]),
            "healthy_90pct_ratio": ratio(st["healthy_90pct_done_s"] or 0, ff["healthy_90pct_done_s"] or 0),
            "healthy_done_p90_ratio": ratio(st["healthy_done_s"]["p90"] or 0, ff["healthy_done_s"]["p90"] or 0),
            "healthy_lease_p50_ratio": ratio(st["healthy_lease_ms"]["p50"] or 0, ff["healthy_lease_ms"]["p50"] or 0),
            "healthy_lease_p90_ratio": ratio(st["healthy_lease_ms"]["p90"] or 0, ff["healthy_lease_ms"]["p90"] or 0),
            "healthy_mailboxes_ok": st["ok"],
            "msgs_per_s_fault_free": round(ff["fetched"] / ff["pass_s"]) if ff["pass_s"] else 0,
            "msgs_per_s_storm": round(st["fetched"] / st["pass_s"]) if st["pass_s"] else 0,
        }
    return res


def write_two_host_config(path, data_dir, ports, n, per_host, max_conn):
    """Mailboxes a0.. on the first simulator and b0.. on the second, interleaved (both hosts have
    work due from the start); throttle_backoff_s = 0: the server's hint alone sets a pause."""
    with open(path, "w") as f:
        f.write("[engine]\n")
        f.write(f'data_dir = "{data_dir}"\nlog_dir = "{data_dir}-logs"\ninfo_logging = true\ndays_back = 30\n')
        f.write(f"max_connections = {max_conn}\nmax_connections_per_host = {per_host}\n\n")
        for i in range(n):
            for name, port in zip(("a", "b"), ports):
                f.write(f'[[mailbox]]\nuser = "{name}{i}"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
                        f'username = "sim{i}"\npassword_env = "MSCAN_SIM_PASSWORD"\nfolders = "INBOX"\n'
                        f"throttle_backoff_s = 0\n\n")


def scenario_governor(args, bins, work, env):
    """Two hosts (two simulators, keyed host:port); in the second run host B refuses every LOGIN
    with `NO [LIMIT] ... retry after S seconds` for its first S seconds."""
    n, m, s_ = args.governor_mailboxes, args.governor_messages, args.governor_throttle_s
    answer = f"NO [LIMIT] Too many concurrent connections, retry after {s_} seconds"
    res = {"mailboxes_per_host": n, "messages_per_mailbox": m, "per_host_limit": args.per_host,
           "throttle_s": s_, "throttle_answer": answer}
    for name, throttle in (("baseline", False), ("throttled", True)):
        log(f"governor: 2 hosts x {n} x {m}, {name}")
        sa = Simulator(bins, work, f"gov-{name}-a", n, m, 1000)
        faults = {"throttle": 1.0, "throttle-s": s_, "throttle-answer": answer} if throttle else None
        try:
            sb = Simulator(bins, work, f"gov-{name}-b", n, m, 1000, faults=faults)
        except Exception:
            sa.finish()
            raise
        data = os.path.join(work, f"gov-{name}-data")
        try:
            cfg = os.path.join(work, f"gov-{name}.toml")
            write_two_host_config(cfg, data, (sa.port, sb.port), n, args.per_host, args.max_connections)
            r = engine_run(bins, cfg, env)
        finally:
            ra, rb = sa.finish(), sb.finish()
        events = log_events(data + "-logs")
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(data + "-logs", ignore_errors=True)
        done = completion_times(None, events)
        ok = {h: sorted(t for u, (t, ev) in done.items() if u.startswith(h) and ev == "scan_ok") for h in "ab"}
        pauses = [e for e in events if e[1] == "host_throttled"]
        leases = lease_ms(events)
        res[name] = {
            "pass_s": round(r["wall_s"], 2), "rc": r["rc"], "error_reasons": r.get("error_reasons", {}),
            "a_ok": len(ok["a"]), "a_done_s": round(ok["a"][-1], 3) if ok["a"] else None,
            "a_lease_ms": percentiles([v for u, v in leases.items() if u.startswith("a")]),
            "b_ok": len(ok["b"]), "b_first_ok_s": round(ok["b"][0], 3) if ok["b"] else None,
            "b_done_s": round(ok["b"][-1], 3) if ok["b"] else None,
            "b_logins": rb.get("logins"), "b_throttled_logins": rb.get("throttled_logins", 0),
            "a_throttled_logins": ra.get("throttled_logins", 0),
            "b_host": f"127.0.0.1:{sb.port}", "host_pauses": len(pauses), "paused_hosts": sorted({e[3] for e in pauses}),
            "first_pause_s": round(pauses[0][0], 3) if pauses else None,
            "pause_detail": pauses[0][4] if pauses else None,
            "a_sim_peak_connections": ra.get("peak_connections"), "b_sim_peak_connections": rb.get("peak_connections"),
        }
    b, t = res["baseline"], res["throttled"]
    res["figures"] = {
        "a_done_ratio": ratio(t["a_done_s"] or 0, b["a_done_s"] or 0),
        "b_throttled_logins": t["b_throttled_logins"],
        "b_throttled_per_mailbox": ratio(t["b_throttled_logins"], n),
        "only_b_paused": t["paused_hosts"] == [t["b_host"]],
    }
    return res


# ---------------------------------------------------------------------------- report
def flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[prefix[:-1]] = d
    return out


def compare(current, previous):
    cur = flatten(current.get("scenarios", {}))
    prev = flatten(previous.get("scenarios", {}))
    lines = [f"## Compared with {previous.get('date', '?')} ({previous.get('machine', {}).get('host', '?')}, "
             f"commit {previous.get('commit', '?')})", "", "| figure | previous | now | now / previous |",
             "|---|---:|---:|---:|"]
    for k in sorted(cur):
        if ".figures." not in k and not k.startswith("scale.runs."):
            continue
        if k in prev:
            lines.append(f"| {k} | {prev[k]} | {cur[k]} | {ratio(cur[k], prev[k]) if prev[k] else '-'} |")
    return "\n".join(lines) + "\n"


def fmt(v):
    return "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v}"


def markdown(rep):
    m = rep["machine"]
    s = rep["scenarios"]
    L = [f"# mailscan benchmark — {rep['date']} — {m['host']}", "",
         f"Commit `{rep['commit']}`, suite `{rep['suite']}`, {rep['elapsed_s']} s in all.  ",
         f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_mib']} MiB RAM, kernel {m['kernel']}, "
         f"load average at start {m['loadavg_at_start']}.  ",
         "Shared, noisy machine: read each figure against the baseline beside it (same run, same data).", ""]
    if "dovecot" in s:
        d = s["dovecot"]
        f = d["figures"]
        L += [f"## 1. Full scan on a private dovecot ({d['mailboxes']} mailboxes x {d['messages_per_mailbox']} "
              f"messages of ~{d['message_bytes']} B, {d['connections']} connections, fresh LOGIN per mailbox)", "",
              "| client | messages | messages/s | engine / it |", "|---|---:|---:|---:|",
              f"| `mailscan run --once` (match + RocksDB; {f.get('engine_fetch_path', 'text')} path) "
              f"| {fmt(f['engine_messages'])} of {fmt(f['expected_messages'])} | {fmt(f['engine_msgs_per_s'])} | 1 |",
              *([f"| the same run's scan window only (`run_started` → last mailbox done: no process start-up, "
                 f"store open or shutdown; the raw client times itself so too) | | "
                 f"{fmt(f['engine_window_msgs_per_s'])} | {fmt(ratio(f['engine_msgs_per_s'], f['engine_window_msgs_per_s']))} "
                 f"(vs the engine's items: {fmt(f['engine_window_vs_raw_structure'])}) |"]
                if f.get("engine_window_msgs_per_s") else []),
              *([f"| the same with `fetch_text = \"always\"` (text path; "
                 f"{fmt(f['engine_text_path_cpu_us_per_msg'])} µs CPU per message) | "
                 f"{fmt(d['engine_first_text_path'].get('fetched'))} | {fmt(f['engine_text_path_msgs_per_s'])} "
                 f"| {fmt(ratio(f['engine_msgs_per_s'], f['engine_text_path_msgs_per_s']))} |"]
                if "engine_text_path_msgs_per_s" in f else []),
              f"| raw client, UID FETCH BODY.PEEK[] | {fmt(d['raw_fetch']['messages'])} | {fmt(f['raw_fetch_msgs_per_s'])} "
              f"({f['raw_fetch_mb_per_s']} MB/s) | {fmt(f['engine_vs_raw_fetch'])} |",
              f"| raw client, BODY.PEEK[HEADER] (warm-up run) | {fmt(d['raw_headers']['messages'])} "
              f"| {fmt(f['raw_headers_msgs_per_s'])} | {fmt(f['engine_vs_raw_headers'])} |",
              *([f"| raw client, the engine's header-path items (+ BODYSTRUCTURE, which dovecot computes "
                 f"on first request; other {d['mailboxes']} mailboxes of the same corpus) "
                 f"| {fmt(d['raw_structure']['messages'])} | {fmt(f['raw_structure_msgs_per_s'])} "
                 f"| {fmt(f['engine_vs_raw_structure'])} |"] if "raw_structure_msgs_per_s" in f else []),
              f"| mbsync ({d['mbsync'].get('processes', 0)} processes) into maildirs | {fmt(d['mbsync'].get('messages'))} "
              f"| {fmt(f['mbsync_msgs_per_s'])} | {fmt(f['engine_vs_mbsync'])} |", "",
              f"Engine CPU per message: **{fmt(f['engine_cpu_us_per_msg'])} µs** (utime+stime of the `mailscan` "
              f"process / messages; raw client: {fmt(f['raw_fetch_cpu_us_per_msg'])} µs); marginal "
              f"**{fmt(f.get('engine_marginal_cpu_us_per_msg'))} µs** after subtracting the "
              f"{fmt(f.get('engine_fixed_cpu_s'))} s CPU of a third `run --once` with nothing new (start-up, "
              f"store open, logins, STATUS, shutdown). Engine peak RSS "
              f"{f['engine_peak_rss_mib']} MiB. Seeding took {d['seed_s']} s.  ",
              f"Dovecot CPU per message (its process group, same phases): {f['dovecot_cpu_us_per_msg_engine']} µs "
              f"serving the engine, {f['dovecot_cpu_us_per_msg_raw_fetch']} µs serving the raw client (bodies), "
              f"{f.get('dovecot_cpu_us_per_msg_raw_headers')} µs (headers), "
              f"{f.get('dovecot_cpu_us_per_msg_raw_structure')} µs (the engine's items); per poll "
              f"{f['dovecot_cpu_ms_per_poll_engine']} ms (engine) vs {f['dovecot_cpu_ms_per_poll_raw_status']} ms "
              "(raw LOGIN+STATUS)."]
        if "mbsync" in d and d["mbsync"].get("errors"):
            L += ["", f"mbsync errors: `{d['mbsync']['errors'][0].strip()[:200]}`"]
    if "deep" in s:
        d = s["deep"]
        f = d["figures"]
        L += ["", f"### 1b. Full scan of a deep corpus ({d['mailboxes']} mailboxes x {fmt(d['messages_per_mailbox'])} "
              f"messages of ~{d['message_bytes']} B, {d['connections']} connections: one mailbox each)", "",
              "| client | messages | messages/s | engine / it | CPU µs per message | dovecot CPU µs per message |",
              "|---|---:|---:|---:|---:|---:|",
              f"| `mailscan run --once` (header path) | {fmt(f['engine_messages'])} of {fmt(f['expected_messages'])} "
              f"| {fmt(f['engine_msgs_per_s'])} | 1 | {fmt(f['engine_cpu_us_per_msg'])} "
              f"| {fmt(f['dovecot_cpu_us_per_msg_engine'])} |",
              *([f"| the same run's scan window only (`run_started` → last mailbox done) | "
                 f"| {fmt(f['engine_window_msgs_per_s'])} | {fmt(ratio(f['engine_msgs_per_s'], f['engine_window_msgs_per_s']))} "
                 f"(vs raw: {fmt(f['engine_window_vs_raw_structure'])}) | | |"] if f.get("engine_window_msgs_per_s") else []),
              f"| raw client, the engine's header-path items (the twin mailboxes) | {fmt(d['raw_structure']['messages'])} "
              f"| {fmt(f['raw_structure_msgs_per_s'])} | {fmt(f['engine_vs_raw_structure'])} "
              f"| {fmt(f['raw_cpu_us_per_msg'])} | {fmt(f['dovecot_cpu_us_per_msg_raw_structure'])} |", "",
              f"Engine peak RSS {f['engine_peak_rss_mib']} MiB. Seeding took {d['seed_s']} s."]
    if "dovecot" in s or "incremental_sim" in s:
        L += ["", "## 2. Incremental poll of unchanged mailboxes", "", "| | polls/s | vs raw LOGIN+STATUS |",
              "|---|---:|---:|"]
    if "dovecot" in s:
        f = s["dovecot"]["figures"]
        L += [f"| dovecot: second `run --once` ({fmt(f['engine_second_fetched'])} fetched, "
              f"{f['engine_second_cpu_ms_per_poll']} ms CPU per poll) | {f['engine_polls_per_s']} "
              f"| {fmt(f['engine_polls_vs_raw_status'])} |",
              f"| dovecot: raw LOGIN+STATUS+LOGOUT | {f['raw_status_polls_per_s']} | 1 |"]
    if "incremental_sim" in s:
        g = s["incremental_sim"]["figures"]
        L += [f"| simulator ({s['incremental_sim']['mailboxes']} mailboxes): second `run --once` "
              f"| {g['engine_polls_per_s']} | {fmt(g['engine_polls_vs_raw'])} |",
              f"| simulator: raw LOGIN+STATUS+LOGOUT | {g['raw_status_polls_per_s']} | 1 |", "",
              f"Server commands per poll (simulator's count, second pass): **{g['commands_per_poll']}** "
              f"({g['commands_per_poll_excluding_logout']} without LOGOUT; {g['logins_per_poll']} LOGINs per poll; "
              f"{g['second_fetched']} messages fetched) vs the raw client's {g['raw_status_commands_per_poll']} "
              f"(LOGIN, STATUS, LOGOUT). By command: `{json.dumps(s['incremental_sim']['second_commands'])}`."]
    if "incremental_kept" in s:
        k = s["incremental_kept"]
        g = k["figures"]
        a, b = k["within_budget"], k["over_budget"]
        L += ["", f"### Kept sessions: long-running `mailscan run`, poll_interval_s = 1, {k['window_s']} s window "
              "(private dovecot, 5 small messages per INBOX)", "",
              "| case | polls/s | demand | vs raw | kept polls | dovecot logins (whole run) | dovecot CPU ms/poll |",
              "|---|---:|---:|---:|---:|---:|---:|",
              f"| {k['mailboxes_within_budget']} mailboxes, max_connections = keep_sessions = "
              f"{k['mailboxes_within_budget']} | {a['polls_per_s']} | {a['demand_polls_per_s']} "
              f"| {fmt(g['kept_within_budget_vs_raw'])} | {a['kept_polls']} of {a['polls']} "
              f"| {a['dovecot_logins_whole_run']} | {fmt(a['dovecot_cpu_ms_per_poll'])} |",
              f"| {k['mailboxes_over_budget']} mailboxes, max_connections = keep_sessions = {k['raw_connections']} "
              f"| {b['polls_per_s']} | {b['demand_polls_per_s']} | {fmt(g['kept_over_budget_vs_raw'])} "
              f"| {b['kept_polls']} of {b['polls']} | {b['dovecot_logins_whole_run']} | {fmt(b['dovecot_cpu_ms_per_poll'])} |",
              f"| raw LOGIN+STATUS+LOGOUT, {k['raw_connections']} connections (mean of before/after) "
              f"| {g['raw_status_polls_per_s']} | - | 1 | - | one per poll | {fmt(g['dovecot_cpu_ms_per_poll_raw_status'])} |",
              "", f"Server commands per poll with kept sessions (simulator, {k['mailboxes_within_budget']} mailboxes, "
              f"whole run incl. the first scans): {fmt(g['sim_commands_per_poll'])}, after the first scan "
              f"**{fmt(g['sim_commands_per_poll_after_first'])}**; LOGINs per poll "
              f"{fmt(g['sim_logins_per_poll'])}. By command: `{json.dumps(k['simulator']['commands'])}`.  ",
              f"SIGTERM to exit (kept sessions logged out): {a['sigterm_exit_s']} s / {b['sigterm_exit_s']} s, "
              f"exit codes {a['rc']} / {b['rc']}."]
    if "scale" in s:
        sc = s["scale"]
        L += ["", f"## 3. Scale on the simulator ({sc['messages_per_mailbox']} messages per mailbox, "
              f"max_connections {sc['max_connections']}, max_connections_per_host {sc['per_host_limit']})", "",
              "| mailboxes | pass s | mailboxes/s | peak RSS MiB | KiB/mailbox (slope over smallest) "
              "| peak connections | refused | ok / failed |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sc["runs"]:
            L.append(f"| {fmt(r['mailboxes'])} | {r['pass_s']} | {r['mailboxes_per_s']} | {r['peak_rss_mib']} "
                     f"| {fmt(r.get('rss_kib_per_mailbox_over_small'))} | {r['sim_peak_connections']} "
                     f"(limit {sc['per_host_limit']}{'' if (r['sim_peak_connections'] or 0) <= sc['per_host_limit'] else ', **exceeded**'}) | {r['sim_refused']} | {fmt(r['ok'])} / {fmt(r['failed'])} |")
        for e in sc.get("errors", []):
            L.append(f"\n**{e}**")
    if "backpressure" in s:
        b = s["backpressure"]
        L += ["", f"## 4. Backpressure ({b['mailboxes']} x {b['messages_per_mailbox']} on the simulator, "
              f"slowed writer: write_delay_ms = {b['write_delay_ms']} per group commit; "
              f"max_inflight_mb = {b.get('max_inflight_mb', 'default')})", "",
              "| writer | pass s | peak RSS MiB | fetched |", "|---|---:|---:|---:|",
              f"| unslowed | {b['unslowed']['pass_s']} | {b['unslowed']['peak_rss_mib']} | {fmt(b['unslowed']['fetched'])} |",
              f"| slowed | {b['slowed']['pass_s']} | {b['slowed']['peak_rss_mib']} | {fmt(b['slowed']['fetched'])} |", "",
              f"Tried write_delay_ms {[a['write_delay_ms'] for a in b['attempts']]} "
              f"(pass s {[a['pass_s'] for a in b['attempts']]}, peak RSS MiB {[a['peak_rss_mib'] for a in b['attempts']]}) "
              "until the pass was >= 5x slower or four tries were spent.  ",
              f"Slowdown {b['figures']['slowdown']}x; peak RSS ratio {b['figures']['peak_rss_ratio']} "
              f"(within 10%: {'yes' if b['figures']['within_10_percent'] else '**no**'})."]
    if "faults" in s:
        fa = s["faults"]
        L += ["", f"## 5. Fault storm ({fa['mailboxes']} x {fa['messages_per_mailbox']} on the simulator; "
              f"fractions {fa['fault_fractions']}; slow_response_ms {fa.get('slow_response_ms', 'default')}; "
              f"two `run --once` passes per store: pass 1 on a fresh store, "
              f"pass 2 the steady state)", "",
              "| run | 90% of mailboxes done OK, s | median OK mailbox done, s | whole pass s | ok | failed "
              "| fetched | reasons |", "|---|---:|---:|---:|---:|---:|---:|---|"]
        keys = [f"{name}_pass{p}" for p in (1, 2) for name in ("fault_free", "storm")]
        for key in keys:
            r = fa[key]
            L.append(f"| {key} | {fmt(r['healthy_90pct_done_s'])} | {fmt(r['ok_p50_s'])} | {r['pass_s']} | {r['ok']} "
                     f"| {r['failed']} | {fmt(r['fetched'])} | {r['error_reasons']} |")
        L += ["", "Healthy mailboxes only (no fault in the storm's plan), the same users in every run:", "",
              "| run | done after start p50 / p90 / p99, s | scan latency (lease → done) p50 / p90 / p99, ms "
              "| restored slow | marked slow | slow-lane yields |", "|---|---|---|---:|---:|---:|"]
        for key in keys:
            r = fa[key]
            d, l = r.get("healthy_done_s", {}), r.get("healthy_lease_ms", {})
            L.append(f"| {key} | {fmt(d.get('p50'))} / {fmt(d.get('p90'))} / {fmt(d.get('p99'))} "
                     f"| {fmt(l.get('p50'))} / {fmt(l.get('p90'))} / {fmt(l.get('p99'))} "
                     f"| {r.get('slow_restored', 0)} | {r.get('slow_marked', 0)} | {r.get('slow_lane_yields', 0)} |")
        for p in (1, 2):
            f = fa["figures"][f"pass{p}"]
            L += ["", f"Pass {p}, storm / fault-free: the others' 90%-done time **{fmt(f.get('healthy_90pct_ratio'))}**, "
                  f"healthy done p90 {fmt(f.get('healthy_done_p90_ratio'))}, healthy scan latency p50 "
                  f"{fmt(f.get('healthy_lease_p50_ratio'))}, p90 {fmt(f.get('healthy_lease_p90_ratio'))}; whole pass "
                  f"(includes the faulty mailboxes themselves) {fmt(f.get('pass_time_ratio'))}."]
    if "governor" in s:
        g = s["governor"]
        L += ["", f"## 6. Load governor (2 simulator hosts x {g['mailboxes_per_host']} x {g['messages_per_mailbox']}, "
              f"{g['per_host_limit']} connections per host; host B answers every LOGIN `{g['throttle_answer']}` "
              f"for its first {g['throttle_s']} s)", "",
              "| run | A: OK | A: all done, s | A: scan p50 / p90 ms | B: OK | B: first OK, s | B: all done, s "
              "| B: logins refused (throttled) | host pauses (hosts) | whole pass s |",
              "|---|---:|---:|---|---:|---:|---:|---:|---|---:|"]
        for name in ("baseline", "throttled"):
            r = g[name]
            L.append(f"| {name} | {r['a_ok']} | {fmt(r['a_done_s'])} | {fmt(r['a_lease_ms']['p50'])} / "
                     f"{fmt(r['a_lease_ms']['p90'])} | {r['b_ok']} | {fmt(r['b_first_ok_s'])} | {fmt(r['b_done_s'])} "
                     f"| {r['b_throttled_logins']} | {r['host_pauses']} ({', '.join(r['paused_hosts']) or '-'}) "
                     f"| {r['pass_s']} |")
        f = g["figures"]
        L += ["", f"Host A all done, throttled run / baseline: **{fmt(f['a_done_ratio'])}**; host B refused "
              f"{f['b_throttled_logins']} of {g['mailboxes_per_host']} logins (the ones in flight when the first "
              f"refusal came back; the host was then paused: {g['throttled']['pause_detail'] or '-'}); "
              f"only B paused: {f['only_b_paused']}."]
    if rep.get("errors"):
        L += ["", "## Scenario errors", ""] + [f"- {e}" for e in rep["errors"]]
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--quick", action="store_true", help="~2-minute subset")
    ap.add_argument("--only", default="", help="comma list: dovecot,deep,incremental,scale,backpressure,faults,governor "
                    "(kept = only the kept-session part of incremental)")
    ap.add_argument("--connections", type=int, default=8, help="engine max_connections = raw client threads")
    ap.add_argument("--dovecot-mailboxes", type=int)
    ap.add_argument("--dovecot-messages", type=int)
    ap.add_argument("--deep-messages", type=int, help="deep corpus: messages per mailbox (mailboxes = --connections)")
    ap.add_argument("--message-bytes", type=int, default=13000)
    ap.add_argument("--scale-sizes", default=None, help="comma list, default 10000,50000 (quick: 10000)")
    ap.add_argument("--scale-small", type=int, default=500)
    ap.add_argument("--scale-messages", type=int, default=2)
    ap.add_argument("--max-connections", type=int, default=64)
    ap.add_argument("--per-host", type=int, default=16)
    ap.add_argument("--poll-mailboxes", type=int)
    ap.add_argument("--poll-messages", type=int, default=20)
    ap.add_argument("--kept-mailboxes", type=int, help="kept sessions: mailboxes within the budget (x2 over it)")
    ap.add_argument("--kept-window", type=int, help="kept sessions: seconds of `mailscan run` measured")
    ap.add_argument("--bp-mailboxes", type=int)
    ap.add_argument("--bp-messages", type=int, default=200)
    ap.add_argument("--write-delay-ms", type=int, default=20)
    ap.add_argument("--bp-inflight-mb", type=int, default=None,
                    help="[engine] max_inflight_mb of both backpressure runs (default: the engine's)")
    ap.add_argument("--fault-mailboxes", type=int)
    ap.add_argument("--slow-response-ms", type=int, help="fault storm: [engine] slow_response_ms "
                    "(default: the engine's, 1000); a lower one finds the slow mailboxes sooner")
    ap.add_argument("--fault-messages", type=int, default=20)
    ap.add_argument("--governor-mailboxes", type=int, help="per host (default 200, quick 50)")
    ap.add_argument("--governor-messages", type=int, default=20)
    ap.add_argument("--governor-throttle-s", type=int, default=5, help="how long host B throttles (and its hint)")
    ap.add_argument("--tag", default="", help="appended to the report's file name")
    ap.add_argument("--engine-timeout", type=float, default=600, help="seconds per `run --once` before it is killed")
    ap.add_argument("--results-dir", default=os.path.join(REPO, "bench", "results"))
    ap.add_argument("--compare", metavar="PREVIOUS.json")
    ap.add_argument("--compare-only", metavar="CURRENT.json", help="with --compare: no run, just the ratios")
    args = ap.parse_args()

    if args.compare_only:
        if not args.compare:
            ap.error("--compare-only needs --compare PREVIOUS.json")
        with open(args.compare_only) as a, open(args.compare) as b:
            print(compare(json.load(a), json.load(b)))
        return 0

    q = args.quick
    ENGINE_TIMEOUT_S[0] = args.engine_timeout
    args.dovecot_mailboxes = args.dovecot_mailboxes or (40 if q else 200)
    args.dovecot_messages = args.dovecot_messages or (100 if q else 100)
    args.poll_mailboxes = args.poll_mailboxes or (200 if q else 1000)
    # Within the budget every mailbox is due once a second: enough of them that the demand
    # (mailboxes/s) exceeds the raw re-login rate, or the figure would only show the demand.
    args.kept_mailboxes = args.kept_mailboxes or (400 if q else 1000)
    args.kept_window = args.kept_window or (10 if q else 20)
    args.bp_mailboxes = args.bp_mailboxes or (40 if q else 100)
    args.fault_mailboxes = args.fault_mailboxes or (200 if q else 1000)
    args.scale_sizes = [int(x) for x in (args.scale_sizes or ("10000" if q else "10000,50000")).split(",") if x]
    args.governor_mailboxes = args.governor_mailboxes or (50 if q else 200)
    args.deep_messages = args.deep_messages or (500 if q else 2500)
    only = set(x for x in args.only.split(",") if x) or {"dovecot", "deep", "incremental", "scale", "backpressure",
                                                          "faults", "governor"}

    b = args.build_dir
    bins = {"mailscan": os.path.join(b, "apps", "mailscan", "mailscan"),
            "raw": os.path.join(b, "bench", "harness", "mailscan_bench_raw"),
            "dovecot": os.path.join(b, "bench", "harness", "mailscan_bench_dovecot")}
    for k, v in bins.items():
        if not os.access(v, os.X_OK):
            print(f"bench: {v} is missing (scripts/bench.sh builds it)", file=sys.stderr)
            return 1

    work = tempfile.mkdtemp(prefix="mailscan-bench.")
    os.chmod(work, 0o711)  # dovecot's mail processes run as `mail` and must traverse it
    env = dict(os.environ)
    env["MSCAN_BENCH_PASSWORD"] = secrets.token_hex(12)  # dovecot users' password: never printed
    env["MSCAN_SIM_PASSWORD"] = "sim"
    rep = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "commit": git_head(), "suite": "quick" if q else "default", "machine": machine(),
           "args": {k: v for k, v in vars(args).items() if k not in ("compare", "compare_only")},
           "scenarios": {}, "errors": []}
    started = time.monotonic()
    steps = [("dovecot", lambda: scenario_dovecot(args, bins, work, env, "MSCAN_BENCH_PASSWORD")),
             ("deep", lambda: scenario_deep(args, bins, work, env, "MSCAN_BENCH_PASSWORD")),
             ("incremental_sim", lambda: scenario_incremental_sim(args, bins, work, env)),
             ("incremental_kept", lambda: scenario_incremental_kept(args, bins, work, env, "MSCAN_BENCH_PASSWORD")),
             ("scale", lambda: scenario_scale(args, bins, work, env)),
             ("backpressure", lambda: scenario_backpressure(args, bins, work, env)),
             ("faults", lambda: scenario_faults(args, bins, work, env)),
             ("governor", lambda: scenario_governor(args, bins, work, env))]
    try:
        for name, fn in steps:
            key = "incremental" if name.startswith("incremental_") else name
            if key not in only and not (name == "incremental_kept" and "kept" in only):
                continue
            t0 = time.monotonic()
            try:
                rep["scenarios"][name] = fn()
                rep["scenarios"][name]["elapsed_s"] = round(time.monotonic() - t0, 1)
            except Exception as e:  # one failed scenario must not lose the others' numbers
                log(f"{name} failed: {e}")
                rep["errors"].append(f"{name}: {e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rep["elapsed_s"] = round(time.monotonic() - started, 1)

    os.makedirs(args.results_dir, exist_ok=True)
    stem = os.path.join(args.results_dir, f"{rep['date'][:10]}-{rep['machine']['host']}")
    if q:
        stem += "-quick"
    if args.tag:
        stem += f"-{args.tag}"
    md = markdown(rep)
    if args.compare:
        with open(args.compare) as f:
            md += "\n" + compare(rep, json.load(f))
    with open(stem + ".json", "w") as f:
        json.dump(rep, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(md)
    print(md)
    log(f"wrote {stem}.md and {stem}.json")
    return 0 if not rep["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
