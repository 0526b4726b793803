#!/usr/bin/python3
"""The sbatch scripts of slurm/ on a Slurm cluster that this test starts itself.

    slurm_cluster_test.py --repo=DIR --server=deltaserve --cli=deltaserve-cli --sim=cartpole_sim

Brings up munged and slurmctld and two slurmd (nodes n1 and n2 of one machine:
Slurm's backfill scheduler reserves whole nodes for a heterogeneous job's
components, so a one-node cluster can never start one) from Debian's packages,
all in a fresh temporary directory, on free loopback ports, as root, without
systemd. Then, with role tokens (--auth_file on the trainer, --token_file on
the simulators):

 1. slurm/trainer.sbatch and a two-task array of slurm/simulators.sbatch meet
    through trainer.addr in the shared directory; the model's version advances
    by --steps.
 2. `scontrol requeue` of array task 1: it runs again (SLURM_RESTART_COUNT=1),
    finishes episodes against the trainer, and the version advances by
    --steps more.
 3. The array is cancelled; slurm/relay.sbatch runs a relay on node n1 and a
    new array with DELTASERVE_VIA_RELAY=1 connects to it (the address it wrote
    to relay.<host>.addr, not the trainer's); the version advances by --steps
    through the relay.
 4. After scancel, slurm/hetjob.sbatch (trainer + 4 simulators with an episode
    budget) restores the trainer from the shared state directory and ends
    COMPLETED with exit code 0.

Every daemon, job and file it creates is gone when it exits, failed or not.
Exit 0 when all of that holds; otherwise 1 with the reason and the logs' tails.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


class Failure(Exception):
    pass


def free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


RUNNING_STATES = ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "COMPLETING")


def wait_for(what, predicate, timeout, interval=0.2):
    """Polls predicate() until it returns a true value; Failure after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tail(path, lines=25):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({e})\n"


class Cluster:
    def __init__(self, root, hostname):
        self.root = root
        self.hostname = hostname
        self.conf = os.path.join(root, "slurm.conf")
        self.logs = os.path.join(root, "log")
        self.daemons = []
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def start(self):
        munge_dir = os.path.join(self.root, "munge")
        for d in (munge_dir, self.logs, os.path.join(self.root, "state"),
                  os.path.join(self.root, "spool")):
            os.makedirs(d)
        # munged refuses a socket directory others cannot search.
        os.chmod(self.root, 0o711)
        os.chmod(munge_dir, 0o755)
        key = os.path.join(munge_dir, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self.munge_socket = os.path.join(munge_dir, "munge.socket")
        self.spawn("munged", ["munged", "--foreground", "--force",
                              f"--socket={self.munge_socket}", f"--key-file={key}",
                              f"--pid-file={munge_dir}/munged.pid",
                              f"--log-file={self.logs}/munged.log",
                              f"--seed-file={munge_dir}/munged.seed"])
        wait_for("munged's socket", lambda: os.path.exists(self.munge_socket), 30)

        ctld_port, n1_port, n2_port = free_ports(3)
        r = self.root
        with open(self.conf, "w") as f:
            f.write(f"""ClusterName=dstest
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket},cred_expire=5
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
KillWait=5
MinJobAge=600
NodeName=n1 NodeHostname={self.hostname} NodeAddr=127.0.0.1 Port={n1_port} CPUs=8 RealMemory=1000
NodeName=n2 NodeHostname={self.hostname} NodeAddr=127.0.0.1 Port={n2_port} CPUs=8 RealMemory=1000
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        self.spawn("slurmctld", ["slurmctld", "-D"])
        for node in ("n1", "n2"):
            self.spawn(f"slurmd-{node}", ["slurmd", "-D", "-N", node])

        def nodes_idle():
            out = self.run(["sinfo", "-h", "-N", "-o", "%N %t"], check=False)
            states = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
            return states.get("n1") == "idle" and states.get("n2") == "idle"
        wait_for("nodes n1 and n2 to be idle in sinfo", nodes_idle, 60, interval=0.5)

    def spawn(self, name, argv):
        out = open(os.path.join(self.logs, f"{name}.out"), "w")
        p = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.daemons.append((name, p))

    def run(self, argv, check=True, env=None):
        p = subprocess.run(argv, env=env or self.env, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise Failure(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
        return p.stdout

    def check_daemons(self):
        for name, p in self.daemons:
            if p.poll() is not None:
                raise Failure(f"{name} exited with status {p.returncode}:\n"
                              + tail(os.path.join(self.logs, f"{name}.out")))

    def job(self, job_id):
        """Fields of `scontrol show job` (the first record), or {} once Slurm forgot it."""
        out = self.run(["scontrol", "-o", "show", "job", str(job_id)], check=False)
        line = out.splitlines()[0] if out else ""
        return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))

    def queue_empty(self):
        return self.run(["squeue", "-h", "-o", "%i"], check=False).strip() == ""

    def stop(self):
        if self.daemons and os.path.exists(self.conf):
            subprocess.run(["scancel", "--full", "--user=root"], env=self.env,
                           capture_output=True, timeout=30)
            try:
                wait_for("the queue to drain", self.queue_empty, 30)
            except Failure:
                pass
        # Job processes are children of slurmstepd, not of this test: find them
        # by this cluster's SLURM_CONF in their environment.
        marker = f"SLURM_CONF={self.conf}".encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        os.kill(int(pid), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        for _, p in reversed(self.daemons):
            if p.poll() is None:
                p.terminate()
        for _, p in reversed(self.daemons):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--cli", required=True)
    parser.add_argument("--sim", required=True)
    parser.add_argument("--steps", type=int, default=100,
                        help="versions the model must advance by, before and after the requeue")
    parser.add_argument("--sim-flags", default="--actions=replica",
                        help="extra simulator flags (space separated)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds for the whole test")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("FAIL: the Slurm cluster test runs slurmd as root; run it as root", file=sys.stderr)
        return 1
    for tool in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "squeue"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            print(f"FAIL: {tool} not found: install slurm-wlm and munge "
                  "(bash scripts/install_deps.sh test)", file=sys.stderr)
            return 1
    os.environ["PATH"] += ":/usr/sbin"
    deadline = time.monotonic() + args.timeout

    def left():
        return max(1.0, deadline - time.monotonic())

    root = tempfile.mkdtemp(prefix="deltaserve-slurm-")
    cluster = Cluster(root, socket.gethostname().split(".")[0])
    # ctest's timeout sends SIGTERM first: clean up then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("FAIL: terminated"))
    shared = os.path.join(root, "shared")
    try:
        cluster.start()
        print(f"cluster up in {root}", flush=True)

        # What a site's shared file system would hold: the binaries, the auth
        # file and the simulators' token.
        bin_dir = os.path.join(root, "bin")
        os.makedirs(bin_dir)
        os.makedirs(shared)
        for name, path in (("deltaserve", args.server), ("cartpole_sim", args.sim)):
            os.symlink(os.path.abspath(path), os.path.join(bin_dir, name))
        token_out = subprocess.run([args.cli, "token", "--name=sims", "--role=simulator"],
                                   capture_output=True, text=True, check=True).stdout.splitlines()
        auth_file = os.path.join(root, "auth.textproto")
        token_file = os.path.join(root, "sims.token")
        with open(auth_file, "w") as f:
            f.write(token_out[0] + "\n")
        with open(token_file, "w") as f:
            f.write(token_out[1] + "\n")
        os.chmod(token_file, 0o600)
        job_env = dict(cluster.env,
                       DELTASERVE_SHARED_DIR=shared, DELTASERVE_BIN_DIR=bin_dir,
                       DELTASERVE_CONFIG=os.path.join(args.repo, "configs/cartpole.textproto"),
                       DELTASERVE_LISTEN="127.0.0.1:0", DELTASERVE_AUTH_FILE=auth_file,
                       DELTASERVE_TOKEN_FILE=token_file, DELTASERVE_ADDR_TIMEOUT="60",
                       DELTASERVE_SLURM_DIR=os.path.join(args.repo, "slurm"))
        scripts = os.path.join(args.repo, "slurm")
        sim_flags = args.sim_flags.split()

        def sbatch(*argv):
            out = cluster.run(["sbatch", "--parsable", f"--chdir={shared}", *argv], env=job_env)
            return out.strip().split(";")[0]

        def version():
            addr_file = os.path.join(shared, "trainer.addr")
            if not os.path.exists(addr_file):
                return None
            with open(addr_file) as f:
                addr = f.read().strip()
            p = subprocess.run([args.cli, "info", f"--target={addr}", f"--token_file={token_file}",
                                "--timeout=5s"], capture_output=True, text=True)
            m = re.search(r"^version: (\d+)$", p.stdout, re.M)
            return int(m.group(1)) if m else None

        def wait_version(what, at_least, jobs):
            def version_at_least():
                cluster.check_daemons()
                for job_id in jobs:
                    state = cluster.job(job_id).get("JobState", "gone")
                    if state not in ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED"):
                        raise Failure(f"job {job_id} is {state} while waiting for {what}")
                v = version()
                return v is not None and v >= at_least and v
            return wait_for(what, version_at_least, left(), interval=0.5)

        # 1. The trainer job and a simulator array, meeting through trainer.addr.
        trainer = sbatch(f"--output={shared}/trainer-%j.out",
                         os.path.join(scripts, "trainer.sbatch"))
        sims = sbatch("--array=0-1", f"--output={shared}/sims-%A_%a.out",
                      os.path.join(scripts, "simulators.sbatch"), *sim_flags)
        jobs = [trainer, f"{sims}_0", f"{sims}_1"]
        start = wait_version("the first trained version", 1, jobs)
        reached = wait_version(f"the version to reach {start + args.steps}",
                               start + args.steps, jobs)
        print(f"trainer job {trainer} and array {sims}: version {start} -> {reached}", flush=True)

        # 2. Requeue one simulator: it must connect again and train.
        sim_out = os.path.join(shared, f"sims-{sims}_1.out")
        cluster.run(["scontrol", "requeue", f"{sims}_1"])

        def rejoined():
            cluster.check_daemons()
            state = cluster.job(f"{sims}_1").get("JobState", "gone")
            if state not in ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "COMPLETING"):
                raise Failure(f"requeued task {sims}_1 is {state} before running episodes again")
            with open(sim_out, errors="replace") as f:
                text = f.read()
            after = text.split("restart 1 on ", 1)
            return len(after) == 2 and re.search(r"^episode=\d+ .*sim=1 ", after[1], re.M)
        wait_for(f"requeued task {sims}_1 to run episodes again ({sim_out})", rejoined, left())
        if cluster.job(f"{sims}_1").get("Restarts") != "1":
            raise Failure(f"task {sims}_1 reports Restarts={cluster.job(f'{sims}_1').get('Restarts')}, "
                          "expected 1")
        after = wait_version(f"the version to reach {reached + args.steps} after the requeue",
                             reached + args.steps, jobs)
        print(f"task {sims}_1 requeued and rejoined; version {reached} -> {after}", flush=True)

        # 3. One relay per node: the array is cancelled, slurm/relay.sbatch runs on node n1
        # and a new array with DELTASERVE_VIA_RELAY=1 reaches the trainer only through it.
        cluster.run(["scancel", sims])
        wait_for(f"array {sims} to end", lambda: all(
            cluster.job(f"{sims}_{i}").get("JobState", "gone") not in RUNNING_STATES
            for i in (0, 1)), left())
        before_relay = version()
        relay = sbatch("--nodes=1", "--nodelist=n1", f"--output={shared}/relay-%j.out",
                       os.path.join(scripts, "relay.sbatch"))
        relay_addr_file = os.path.join(shared, f"relay.{socket.gethostname().split('.')[0]}.addr")

        def relay_serving():
            cluster.check_daemons()
            state = cluster.job(relay).get("JobState", "gone")
            if state not in RUNNING_STATES:
                raise Failure(f"relay job {relay} is {state}:\n"
                              + tail(os.path.join(shared, f"relay-{relay}.out")))
            if not os.path.exists(relay_addr_file):
                return None
            with open(relay_addr_file) as f:
                return f.read().strip()
        relay_addr = wait_for(f"relay job {relay} to write {relay_addr_file}", relay_serving,
                              left())
        with open(os.path.join(shared, "trainer.addr")) as f:
            trainer_addr = f.read().strip()
        if relay_addr == trainer_addr:
            raise Failure(f"the relay's address {relay_addr} is the trainer's")
        relayed = sbatch("--array=0-1", f"--output={shared}/relayed-%A_%a.out",
                         "--export=ALL,DELTASERVE_VIA_RELAY=1",
                         os.path.join(scripts, "simulators.sbatch"), *sim_flags)
        relayed_jobs = [trainer, relay, f"{relayed}_0", f"{relayed}_1"]
        through = wait_version(f"the version to reach {before_relay + args.steps} through the "
                               "relay", before_relay + args.steps, relayed_jobs)
        # One task can train that far alone, before the other has started (its output
        # did not exist yet in one CI run): wait for each to say where it connected.
        for i in (0, 1):
            out = os.path.join(shared, f"relayed-{relayed}_{i}.out")

            def connected(i=i, out=out):
                cluster.check_daemons()
                state = cluster.job(f"{relayed}_{i}").get("JobState", "gone")
                if state not in RUNNING_STATES:
                    raise Failure(f"relayed task {relayed}_{i} is {state}:\n" + tail(out))
                if not os.path.exists(out):
                    return None
                with open(out, errors="replace") as f:
                    text = f.read()
                if f"connecting to {relay_addr}" in text:
                    return True
                if "connecting to " in text:
                    raise Failure(f"relayed task {i} did not connect to the relay {relay_addr}:\n"
                                  + text[-2000:])
                return None
            wait_for(f"relayed task {relayed}_{i} to connect to the relay ({out})", connected,
                     left())
        print(f"relay job {relay} serving {relay_addr}; array {relayed} through it: version "
              f"{before_relay} -> {through}", flush=True)

        cluster.run(["scancel", relayed, relay, trainer])
        wait_for("the trainer, relay and simulator jobs to end", cluster.queue_empty, left())

        # 4. The heterogeneous job: restores from the shared state, trains, ends cleanly.
        het = sbatch(f"--output={shared}/het-%j.out", os.path.join(scripts, "hetjob.sbatch"),
                     *sim_flags, "--episodes=40")
        wait_for(f"heterogeneous job {het} to end",
                 lambda: cluster.job(het).get("JobState") not in
                 ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", None), left())
        info = cluster.job(het)
        het_out = os.path.join(shared, f"het-{het}.out")
        if info.get("JobState") != "COMPLETED" or info.get("ExitCode") != "0:0":
            raise Failure(f"heterogeneous job {het} ended {info.get('JobState')} with exit code "
                          f"{info.get('ExitCode')}:\n{tail(het_out, 40)}")
        with open(het_out, errors="replace") as f:
            text = f.read()
        summaries = re.findall(r"^summary sim=(\d+) episodes=40 ", text, re.M)
        if sorted(summaries) != ["0", "1", "2", "3"]:
            raise Failure(f"heterogeneous job: expected 40-episode summaries of simulators 0-3, "
                          f"got {summaries}:\n{tail(het_out, 40)}")
        restored = re.search(r'restored version (\d+)', text)
        if not restored or int(restored.group(1)) < after:
            raise Failure("heterogeneous job's trainer did not restore version >= "
                          f"{after} from the shared state directory:\n{tail(het_out, 40)}")
        print(f"heterogeneous job {het}: restored version {restored.group(1)}, "
              "4 simulators finished 40 episodes each, COMPLETED 0:0", flush=True)
        print("PASS")
        return 0
    except (Failure, subprocess.SubprocessError, OSError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        for name in sorted(os.listdir(shared)) if os.path.isdir(shared) else []:
            if name.endswith(".out"):
                print(f"--- {name}:\n{tail(os.path.join(shared, name))}", file=sys.stderr)
        for name in sorted(os.listdir(cluster.logs)) if os.path.isdir(cluster.logs) else []:
            print(f"--- log/{name}:\n{tail(os.path.join(cluster.logs, name), 10)}",
                  file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
