#!/usr/bin/env python3
"""Cluster throughput on the embedded simulator: one `mailscan run --once` (no cluster) and a
coordinator --once with 1, 2 and 4 nodes (separate processes, loopback), the same mailboxes and
the same connection bounds. Reports msgs/s and the ratio to 1 node. On a 2-core machine the
nodes share the cores with the coordinator and the simulator: the ratio shows the cluster's
overhead, not a speed-up.

  python3 bench/cluster/cluster_bench.py --build-dir build [--mailboxes 40] [--messages 500]
      [--nodes 1,2,4] [--repeat 2] [--out bench/results/DATE-HOST-cluster]
"""
import argparse, datetime, json, os, platform, re, shutil, signal, subprocess, sys, tempfile, time


def wait_for(path, pattern, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            m = re.search(pattern, open(path).read())
            if m:
                return m
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {pattern!r} in {path}")


def machine():
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "loadavg_at_start": os.getloadavg()[0]}


def one_run(exe, work, sim_port, mailboxes, messages, nodes, max_conn):
    d = tempfile.mkdtemp(dir=work)
    conf = os.path.join(d, "mailscan.toml")
    text = (f'[engine]\ndata_dir = "data"\nlog_dir = "logs"\ndays_back = 0\nmax_connections = {max_conn}\n'
            f'max_connections_per_host = {max_conn}\n\n'
            f'[cluster]\nsecret_env = "MSCAN_BENCH_SECRET"\nmin_nodes = {max(nodes, 1)}\n\n')
    for i in range(mailboxes):
        text += (f'[[mailbox]]\nuser = "sim{i}"\nhost = "127.0.0.1"\nport = {sim_port}\nsecurity = "none"\n'
                 f'username = "sim{i}"\npassword = "sim"\nfolders = "INBOX"\n\n')
    open(conf, "w").write(text)
    env = dict(os.environ, MSCAN_BENCH_SECRET=os.urandom(16).hex())
    procs = []
    t0 = time.time()
    if nodes == 0:
        rc = subprocess.run([exe, "run", "--config", conf, "--once"], env=env, stdout=subprocess.DEVNULL).returncode
    else:
        out = os.path.join(d, "coordinator.out")
        coord = subprocess.Popen([exe, "coordinator", "--config", conf, "--listen", "127.0.0.1:0", "--once"],
                                 env=env, stdout=open(out, "w"), stderr=subprocess.STDOUT)
        port = wait_for(out, r"listening 127\.0\.0\.1:(\d+)").group(1)
        for n in range(nodes):
            procs.append(subprocess.Popen([exe, "node", "--join", f"127.0.0.1:{port}", "--name", f"n{n}"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        rc = coord.wait(timeout=600)
        for p in procs:
            p.wait(timeout=30)
    elapsed = time.time() - t0
    q = subprocess.run([exe, "query", "--config", conf, "messages", "--json"], capture_output=True, text=True)
    tracked = len(json.loads(q.stdout)["messages"])
    shutil.rmtree(d, ignore_errors=True)
    if rc != 0 or tracked != mailboxes * messages:
        raise RuntimeError(f"nodes={nodes}: exit {rc}, {tracked} of {mailboxes * messages} messages tracked")
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--mailboxes", type=int, default=40)
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--max-connections", type=int, default=8)
    ap.add_argument("--nodes", default="1,2,4")
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting; the best is reported")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    exe = os.path.join(a.build_dir, "apps", "mailscan", "mailscan")
    work = tempfile.mkdtemp(prefix="mscan-cluster-bench-")
    sim_out = os.path.join(work, "sim.out")
    sim = subprocess.Popen([exe, "simulate", "--listen", "127.0.0.1:0", "--mailboxes", str(a.mailboxes), "--messages",
                            str(a.messages), "--max-connections", str(a.max_connections),
                            "--report", os.path.join(work, "sim.json")], stdout=open(sim_out, "w"),
                           stderr=subprocess.STDOUT)
    results = []
    info = machine()
    try:
        sim_port = int(wait_for(sim_out, r"ready 127\.0\.0\.1:(\d+)").group(1))
        settings = [0] + [int(x) for x in a.nodes.split(",")]
        for nodes in settings:
            best = min(one_run(exe, work, sim_port, a.mailboxes, a.messages, nodes, a.max_connections)
                       for _ in range(a.repeat))
            results.append({"nodes": nodes, "seconds": round(best, 3),
                            "msgs_per_s": round(a.mailboxes * a.messages / best, 1)})
            print(f"nodes={nodes or 'none (run --once)'}: {best:.2f} s, {a.mailboxes * a.messages / best:.0f} msgs/s",
                  file=sys.stderr)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)
    peak = json.load(open(os.path.join(work, "sim.json"))).get("peak_connections")
    shutil.rmtree(work, ignore_errors=True)
    one = next(r for r in results if r["nodes"] == 1)
    for r in results:
        r["ratio_to_1_node"] = round(r["msgs_per_s"] / one["msgs_per_s"], 3)
    report = {"date": datetime.date.today().isoformat(), "machine": info, "mailboxes": a.mailboxes,
              "messages_per_mailbox": a.messages, "max_connections": a.max_connections,
              "simulator_peak_connections": peak, "repeat": a.repeat, "results": results}
    md = [f"# Cluster throughput on the simulator, {report['date']}", "",
          f"Machine: {info['host']}, {info['nproc']} cores ({info['cpu']}), kernel {info['kernel']}, "
          f"load {info['loadavg_at_start']:.2f} at start.", "",
          f"{a.mailboxes} mailboxes x {a.messages} messages, max_connections = max_connections_per_host = "
          f"{a.max_connections}; best of {a.repeat}; the simulator's peak concurrent connections over every "
          f"run: {peak}.", "",
          "| setting | seconds | msgs/s | ratio to 1 node |", "|---|---|---|---|"]
    for r in results:
        name = "single process (`run --once`)" if r["nodes"] == 0 else f"coordinator + {r['nodes']} node(s)"
        md.append(f"| {name} | {r['seconds']} | {r['msgs_per_s']} | {r['ratio_to_1_node']} |")
    md.append("")
    md.append(f"On {info['nproc']} cores every node, the coordinator and the simulator share the CPU: the ratios "
              "show the cluster's overhead (serialisation over the middleman, one more hop per batch), not a speed-up.")
    text = "\n".join(md) + "\n"
    if a.out:
        open(a.out + ".md", "w").write(text)
        json.dump(report, open(a.out + ".json", "w"), indent=2)
    print(text)


if __name__ == "__main__":
    main()
