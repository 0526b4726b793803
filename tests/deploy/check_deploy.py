#!/usr/bin/python3
"""Cross-checks the deployment files against the image and the binaries.

The Kubernetes manifests (docker/k8s/), the Compose file and Prometheus'
scrape config must agree with docker/Dockerfile (entry point, installed
binaries, exposed ports, volume, user) and with the flags the binaries
define: a typo in an argument, a port that is not the one the server listens
on or a probe on the wrong port would only show once deployed.

    check_deploy.py --repo=DIR [--server-binary=PATH] [--python-stubs=DIR]

--server-binary: the built `deltaserve`; its flags are read from
`--help` (else from the ABSL_FLAG definitions in server/main.cc).
--python-stubs: <build>/python; if the generated deltaserve.v1 stubs are
there, the ConfigMap's ServerConfig is parsed with them (else compared as
text).
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import unittest

import yaml

ARGS = None


def read(path):
    with open(os.path.join(ARGS.repo, path), encoding="utf-8") as f:
        return f.read()


def abseil_flags_in(path):
    """Names of the flags ABSL_FLAG defines in a source file."""
    return set(re.findall(r"ABSL_FLAG\(\s*[^,]+,\s*(\w+)\s*,", read(path)))


def server_flags():
    """The flags `deltaserve --help` lists; without --server-binary, the ABSL_FLAG
    definitions in server/main.cc. A binary that was passed but is missing, or
    lists no flags, fails the check (never a silent fallback)."""
    if not ARGS.server_binary:
        return abseil_flags_in("server/main.cc")
    if not os.path.isfile(ARGS.server_binary):
        raise AssertionError("%s does not exist: build the deltaserve target" % ARGS.server_binary)
    out = subprocess.run([ARGS.server_binary, "--help"], capture_output=True,
                         text=True, timeout=30, check=False)
    if out.returncode != 0:
        raise AssertionError("%s --help exited %d: %s" % (ARGS.server_binary, out.returncode,
                                                          out.stdout + out.stderr))
    flags = set(re.findall(r"^\s+--?(\w+) \(", out.stdout, re.M))
    if not flags:
        raise AssertionError("%s --help listed no flags:\n%s" % (ARGS.server_binary, out.stdout))
    return flags


def flag_map(args):
    """['--a=1', '--b'] -> {'a': '1', 'b': None}; non-flags raise."""
    flags = {}
    for arg in args:
        m = re.fullmatch(r"--([\w-]+)(?:=(.*))?", arg)
        if not m:
            raise AssertionError("argument %r is not a --flag[=value]" % arg)
        flags[m.group(1)] = m.group(2)
    return flags


def port_of(address):
    return int(address.rsplit(":", 1)[1])


class Dockerfile:
    """The final stage of docker/Dockerfile, plus the build stage's TARGETS."""

    def __init__(self, text):
        # Join continuation lines, drop comments.
        lines, current = [], ""
        for raw in text.splitlines():
            if re.match(r"\s*#", raw):
                continue
            if raw.endswith("\\"):
                current += raw[:-1] + " "
                continue
            current += raw
            if current.strip():
                lines.append(current.strip())
            current = ""
        stages = []
        for line in lines:
            word, _, rest = line.partition(" ")
            if word.upper() == "FROM":
                stages.append([])
            stages[-1].append((word.upper(), rest.strip()))
        self.stages = stages
        final = stages[-1]

        def last(instr):
            found = [rest for word, rest in final if word == instr]
            return found[-1] if found else None

        self.entrypoint = yaml.safe_load(last("ENTRYPOINT"))
        self.cmd = yaml.safe_load(last("CMD"))
        self.expose = {int(p) for word, rest in final if word == "EXPOSE" for p in rest.split()}
        self.volumes = yaml.safe_load(last("VOLUME"))
        self.user = last("USER")
        self.healthcheck = yaml.safe_load(last("HEALTHCHECK").split(" CMD ", 1)[1])
        self.run = " ".join(rest for word, rest in final if word == "RUN")
        self.copies = [rest for word, rest in final if word == "COPY"]
        targets = [rest for stage in stages for word, rest in stage
                   if word == "ARG" and rest.startswith("TARGETS=")]
        self.targets = set(targets[0].split("=", 1)[1].strip('"').split())

    def uid(self):
        m = re.search(r"useradd [^&]*--uid (\d+)", self.run)
        return int(m.group(1)) if m else None

    def gid(self):
        m = re.search(r"groupadd [^&]*--gid (\d+)", self.run)
        return int(m.group(1)) if m else None


def load_k8s():
    docs = []
    for name in sorted(os.listdir(os.path.join(ARGS.repo, "docker/k8s"))):
        if name.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(read("docker/k8s/" + name)) if d]
    return docs


def only(items, what):
    if len(items) != 1:
        raise AssertionError("expected exactly one %s, found %d" % (what, len(items)))
    return items[0]


def shell_exec_argv(container):
    """argv of a container: command+args, or the `exec ...` of a /bin/sh -c."""
    argv = list(container.get("command", [])) + list(container.get("args", []))
    if argv[:2] == ["/bin/sh", "-c"]:
        script = argv[2].replace("$$", "$")
        m = re.search(r"\bexec\s+(.*)", script, re.S)
        if not m:
            raise AssertionError("sh -c script without exec: %r" % script)
        # $(...) and `...` substitutions become a placeholder value.
        script = re.sub(r"\$\([^)]*\)|`[^`]*`", "0", m.group(1))
        return shlex.split(script)
    return argv


class DeployTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docker = Dockerfile(read("docker/Dockerfile"))
        cls.server_flags = server_flags()
        # cartpole_sim's own flags, plus --server and --model from the runner
        # every simulator shares, plus the --tls_* / --token_file flags of
        # every client binary.
        security = abseil_flags_in("client/security_flags.cc")
        cls.sim_flags = (abseil_flags_in("sim/cartpole_sim.cc")
                         | abseil_flags_in("sim/runner_flags.cc") | security)
        cls.cli_flags = abseil_flags_in("client/cli/main.cc") | security
        cls.k8s = load_k8s()
        cls.compose = yaml.safe_load(read("docker/compose.yaml"))

    # --- the image ---------------------------------------------------------

    def assertServerArgs(self, args, where):
        flags = flag_map(args)
        unknown = set(flags) - self.server_flags
        self.assertFalse(unknown, "%s passes %s, which deltaserve does not define (it has: %s)"
                         % (where, sorted(unknown), sorted(self.server_flags)))
        for required in ("config", "listen"):
            self.assertIn(required, flags, "%s: deltaserve needs --%s" % (where, required))
        return flags

    def test_image_entrypoint_is_the_installed_server(self):
        self.assertEqual(self.docker.entrypoint, ["deltaserve"])
        self.assertIn("deltaserve", self.docker.targets)

    def test_image_default_args_are_server_flags_on_exposed_ports(self):
        flags = self.assertServerArgs(self.docker.cmd, "Dockerfile CMD")
        self.assertIn(port_of(flags["listen"]), self.docker.expose)
        self.assertIn(port_of(flags["metrics_listen"]), self.docker.expose)
        self.assertTrue(any(c.endswith(" " + flags["config"]) for c in self.docker.copies),
                        "the image ships no default config at %s" % flags["config"])
        self.assertIn("/var/lib/deltaserve", self.docker.volumes)
        self.assertStateOnVolume(flags, self.docker.volumes, "Dockerfile CMD")

    def assertStateOnVolume(self, flags, volumes, where):
        """--state_dir is set and lies on one of the mounted volumes."""
        self.assertIn("state_dir", flags, where + " runs without --state_dir: a restart loses all")
        self.assertTrue(any(flags["state_dir"] == v or flags["state_dir"].startswith(v + "/")
                            for v in volumes),
                        "%s: --state_dir=%s is on no volume (%s)" % (where, flags["state_dir"],
                                                                     volumes))

    def test_image_healthcheck_asks_the_grpc_health_service(self):
        argv = self.docker.healthcheck
        self.assertEqual(argv[:2], ["deltaserve-cli", "health"])
        self.assertIn("deltaserve-cli", self.docker.targets)
        flags = flag_map(argv[2:])
        self.assertLessEqual(set(flags), self.cli_flags)
        self.assertEqual(port_of(flags["target"]), port_of(flag_map(self.docker.cmd)["listen"]))

    def test_image_runs_as_a_non_root_user(self):
        self.assertIsNotNone(self.docker.user)
        self.assertNotIn(self.docker.user.split(":")[0], ("root", "0"))
        self.assertIsNotNone(self.docker.uid(), "useradd --uid missing from the Dockerfile")

    # --- Kubernetes --------------------------------------------------------

    def trainer(self):
        return only([d for d in self.k8s if d["kind"] in ("StatefulSet", "Deployment")
                     and d["metadata"]["name"] == "deltaserve"], "trainer workload")

    def test_k8s_trainer_is_a_single_writer_running_the_server(self):
        trainer = self.trainer()
        self.assertEqual(trainer["spec"]["replicas"], 1, "one writer per model")
        if trainer["kind"] == "Deployment":
            self.assertEqual(trainer["spec"].get("strategy", {}).get("type"), "Recreate",
                             "a rolling update would run two trainers on one state volume")
        pod = trainer["spec"]["template"]["spec"]
        c = only(pod["containers"], "trainer container")
        self.assertEqual(c["image"], self.image_name())
        self.assertNotIn("command", c, "the image's ENTRYPOINT (deltaserve) must run")
        flags = self.assertServerArgs(c["args"], "k8s trainer args")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports["grpc"], port_of(flags["listen"]))
        self.assertEqual(ports["metrics"], port_of(flags["metrics_listen"]))
        self.assertLessEqual(set(ports.values()), self.docker.expose)
        annotations = trainer["spec"]["template"]["metadata"].get("annotations", {})
        self.assertEqual(int(annotations["prometheus.io/port"]), ports["metrics"])
        self.assertEqual(pod["securityContext"]["runAsUser"], self.docker.uid())
        self.assertEqual(pod["securityContext"]["runAsGroup"], self.docker.gid())

    def test_k8s_probes_use_grpc_health_on_the_listen_port(self):
        c = only(self.trainer()["spec"]["template"]["spec"]["containers"], "trainer container")
        listen = port_of(flag_map(c["args"])["listen"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            self.assertIn(probe, c)
            spec = c[probe]
            if "grpc" in spec:
                self.assertEqual(spec["grpc"]["port"], listen, probe)
            else:
                argv = spec["exec"]["command"]
                self.assertEqual(argv[:2], ["deltaserve-cli", "health"], probe)
                self.assertEqual(port_of(flag_map(argv[2:])["target"]), listen, probe)

    def test_k8s_config_and_checkpoints_are_mounted_where_the_server_looks(self):
        trainer = self.trainer()
        pod = trainer["spec"]["template"]["spec"]
        c = only(pod["containers"], "trainer container")
        config = flag_map(c["args"])["config"]
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        config_volume = only([n for n, v in volumes.items() if "configMap" in v], "config volume")
        self.assertEqual(mounts[config_volume], os.path.dirname(config))
        cm_name = volumes[config_volume]["configMap"]["name"]
        cm = only([d for d in self.k8s if d["kind"] == "ConfigMap"
                   and d["metadata"]["name"] == cm_name], "ConfigMap " + cm_name)
        self.assertIn(os.path.basename(config), cm["data"])
        claims = {t["metadata"]["name"]: t["metadata"]["name"]
                  for t in trainer["spec"].get("volumeClaimTemplates", [])}
        claims.update({n: v["persistentVolumeClaim"]["claimName"] for n, v in volumes.items()
                       if "persistentVolumeClaim" in v})
        pvcs = {d["metadata"]["name"] for d in self.k8s if d["kind"] == "PersistentVolumeClaim"}
        for name, claim in claims.items():
            if name not in {t["metadata"]["name"]
                            for t in trainer["spec"].get("volumeClaimTemplates", [])}:
                self.assertIn(claim, pvcs, "volume %s claims %s, which no manifest defines"
                              % (name, claim))
        checkpoint_mounts = [mounts[n] for n in claims]
        self.assertEqual(checkpoint_mounts, self.docker.volumes)
        self.assertStateOnVolume(flag_map(c["args"]), checkpoint_mounts, "k8s trainer args")

    def test_k8s_configmap_is_the_cartpole_config(self):
        cm = only([d for d in self.k8s if d["kind"] == "ConfigMap"], "ConfigMap")
        text = cm["data"]["config.textproto"]
        reference = read("configs/cartpole.textproto")
        if ARGS.python_stubs and os.path.isfile(
                os.path.join(ARGS.python_stubs, "deltaserve/v1/config_pb2.py")):
            sys.path.insert(0, ARGS.python_stubs)
            from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
            from deltaserve.v1 import config_pb2  # pylint: disable=import-outside-toplevel
            got = text_format.Parse(text, config_pb2.ServerConfig())
            want = text_format.Parse(reference, config_pb2.ServerConfig())
            self.assertEqual(got, want, "ConfigMap differs from configs/cartpole.textproto")
            model = got.models[0]
            self.assertEqual((model.input_dim, model.layers[-1].units), (4, 2),
                             "cartpole_sim needs 4 inputs and 2 outputs")
        else:
            strip = lambda s: [l.strip() for l in s.splitlines()
                               if l.strip() and not l.strip().startswith("#")]
            self.assertEqual(strip(text), strip(reference))

    def image_name(self):
        kustomization = yaml.safe_load(read("docker/k8s/kustomization.yaml"))
        return only(kustomization["images"], "kustomize image")["name"]

    def test_k8s_services_route_to_the_trainer_ports(self):
        trainer = self.trainer()
        labels = trainer["spec"]["template"]["metadata"]["labels"]
        c = only(trainer["spec"]["template"]["spec"]["containers"], "trainer container")
        port_names = {p["name"] for p in c["ports"]}
        services = [d for d in self.k8s if d["kind"] == "Service"]
        self.assertTrue(services)
        for svc in services:
            for k, v in svc["spec"]["selector"].items():
                self.assertEqual(labels.get(k), v, "Service %s selects no trainer pod"
                                 % svc["metadata"]["name"])
            for p in svc["spec"]["ports"]:
                self.assertIn(p["targetPort"], port_names)
        if trainer["kind"] == "StatefulSet":
            self.assertEqual(trainer["spec"]["serviceName"],
                             only([s["metadata"]["name"] for s in services
                                   if s["spec"].get("clusterIP") == "None"], "headless Service"))

    def test_k8s_manifests_are_kinds_podman_kube_play_runs(self):
        """scripts/kube_test.sh runs these very files with podman 4.3's kube
        play, which plays Pods, Deployments, PersistentVolumeClaims,
        ConfigMaps and Secrets and skips the rest; a Service only names the
        trainer (the test gives the trainer pod that name)."""
        playable = {"Pod", "Deployment", "PersistentVolumeClaim", "ConfigMap", "Secret"}
        for d in self.k8s:
            if d["kind"] == "Kustomization":
                continue
            self.assertIn(d["kind"], playable | {"Service"},
                          "%s %s: podman kube play cannot run it, so scripts/kube_test.sh "
                          "would not test it" % (d["kind"], d["metadata"]["name"]))
        kustomization = yaml.safe_load(read("docker/k8s/kustomization.yaml"))
        manifests = {n for n in os.listdir(os.path.join(ARGS.repo, "docker/k8s"))
                     if n.endswith(".yaml") and n != "kustomization.yaml"}
        self.assertEqual(set(kustomization["resources"]), manifests,
                         "kustomization.yaml's resources must list every manifest")
        for d in self.k8s:
            if d["kind"] != "Deployment":
                continue
            pod = d["spec"]["template"]["spec"]
            for v in pod.get("volumes", []):
                if "secret" in v:
                    # podman 4.3 dereferences a missing "optional" and crashes.
                    self.assertIn("optional", v["secret"], "%s volume %s"
                                  % (d["metadata"]["name"], v["name"]))
            for c in pod["containers"]:
                # Kubernetes expands $(NAME) in command and args (and $$ to
                # $); kube play passes them as they are.
                for arg in c.get("command", []) + c.get("args", []):
                    self.assertNotIn("$(", arg, "%s: %r means different things to Kubernetes "
                                     "and podman kube play" % (d["metadata"]["name"], arg))

    def test_k8s_simulators_reach_the_service(self):
        sims = [d for d in self.k8s if d["kind"] == "Deployment"
                and d["metadata"]["name"] != "deltaserve"]
        self.assertTrue(sims, "no simulator Deployment")
        services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]}
                    for s in self.k8s if s["kind"] == "Service"}
        for sim in sims:
            self.assertGreaterEqual(sim["spec"]["replicas"], 1)
            c = only(sim["spec"]["template"]["spec"]["containers"], "simulator container")
            self.assertEqual(c["image"], self.image_name())
            argv = shell_exec_argv(c)
            self.assertEqual(argv[0], "cartpole_sim")
            self.assertIn("cartpole_sim", self.docker.targets)
            flags = flag_map(argv[1:])
            self.assertLessEqual(set(flags), self.sim_flags)
            host, port = flags["server"].rsplit(":", 1)
            self.assertIn(host, services)
            self.assertIn(int(port), services[host])

    # --- Compose and Prometheus --------------------------------------------

    def test_compose_trainer_matches_the_image(self):
        services = self.compose["services"]
        trainer = services["trainer"]
        self.assertEqual(trainer["build"]["dockerfile"], "docker/Dockerfile")
        flags = self.assertServerArgs(trainer["command"], "compose trainer command")
        targets = [v.split(":")[1] for v in trainer["volumes"]]
        self.assertIn(flags["config"], targets)
        self.assertIn(self.docker.volumes[0], targets)
        self.assertStateOnVolume(flags, targets, "compose trainer command")
        check = trainer["healthcheck"]["test"]
        self.assertEqual(check[:3], ["CMD", "deltaserve-cli", "health"])
        self.assertEqual(port_of(flag_map(check[3:])["target"]), port_of(flags["listen"]))
        # Every image service uses the one image the trainer builds.
        for name in ("cartpole", "cartpole-py"):
            self.assertEqual(services[name]["image"], trainer["image"], name)

    def test_compose_simulators_reach_the_trainer(self):
        services = self.compose["services"]
        listen = port_of(flag_map(services["trainer"]["command"])["listen"])
        sim = services["cartpole"]
        argv = shell_exec_argv({"command": sim["entrypoint"], "args": sim["command"]})
        self.assertEqual(argv[0], "cartpole_sim")
        flags = flag_map(argv[1:])
        self.assertLessEqual(set(flags), self.sim_flags)
        self.assertEqual(flags["server"], "trainer:%d" % listen)
        py = services["cartpole-py"]
        self.assertEqual(py["entrypoint"][0], "python3")
        script = py["entrypoint"][1]
        prefix = "/opt/deltaserve/python/"
        self.assertTrue(script.startswith(prefix))
        self.assertTrue(os.path.isfile(os.path.join(ARGS.repo, "client/python",
                                                    script[len(prefix):])),
                        "compose runs %s, which client/python does not have" % script)
        py_flags = flag_map(py["command"])
        self.assertEqual(py_flags["server"], "trainer:%d" % listen)
        defined = set()
        for source in (script[len(prefix):], "deltaserve_client/security.py"):
            defined |= set(re.findall(r'add_argument\(\s*"--([\w-]+)"',
                                      read("client/python/" + source)))
        self.assertLessEqual(set(py_flags), defined)

    # --- security: TLS and tokens from secrets ------------------------------

    def assertServesTlsWithTokens(self, flags, where):
        for flag in ("tls_cert_file", "tls_key_file", "auth_file"):
            self.assertIn(flag, flags, "%s: the trainer must get --%s (docs/security.md)"
                          % (where, flag))
        return [flags[f] for f in ("tls_cert_file", "tls_key_file", "auth_file")]

    def k8s_secret_files(self, pod, container, paths, where):
        """Each path is a file of a Secret volume the container mounts, and the
        Secret (kustomization secretGenerator) has that file."""
        kustomization = yaml.safe_load(read("docker/k8s/kustomization.yaml"))
        generated = {g["name"]: {os.path.basename(f) for f in g["files"]}
                     for g in kustomization.get("secretGenerator", [])}
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        for path in paths:
            directory, name = os.path.split(path)
            self.assertIn(directory, mounts, "%s: nothing is mounted at %s" % (where, directory))
            secret = secrets.get(mounts[directory])
            self.assertIsNotNone(secret, "%s: %s is not a Secret volume" % (where, directory))
            self.assertIn(name, generated.get(secret, set()),
                          "%s: Secret %s has no file %s" % (where, secret, name))

    def test_image_serves_tls_with_tokens_and_its_healthcheck_speaks_tls(self):
        self.assertServesTlsWithTokens(flag_map(self.docker.cmd), "Dockerfile CMD")
        self.assertIn("tls_ca_file", flag_map(self.docker.healthcheck[2:]))

    def test_k8s_secret_files_are_readable_by_the_pods_user(self):
        """A Secret volume's files belong to root and the pod's fsGroup: with
        a defaultMode that others cannot read, the pod must set fsGroup to
        the group it runs as."""
        for d in self.k8s:
            if d["kind"] not in ("Deployment", "StatefulSet"):
                continue
            pod = d["spec"]["template"]["spec"]
            ctx = pod.get("securityContext", {})
            for v in pod.get("volumes", []):
                mode = v.get("secret", {}).get("defaultMode", 0o644)
                if "secret" in v and not mode & 0o004:
                    self.assertTrue(mode & 0o040, "%s: Secret volume %s mode %o: group cannot "
                                    "read" % (d["metadata"]["name"], v["name"], mode))
                    self.assertEqual(ctx.get("fsGroup"), ctx.get("runAsGroup"),
                                     "%s: Secret volume %s (mode %o) is readable by group "
                                     "fsGroup only, and the pod runs as group %s"
                                     % (d["metadata"]["name"], v["name"], mode,
                                        ctx.get("runAsGroup")))

    def test_k8s_trainer_and_simulators_use_tls_and_tokens_from_secrets(self):
        pod = self.trainer()["spec"]["template"]["spec"]
        c = only(pod["containers"], "trainer container")
        paths = self.assertServesTlsWithTokens(flag_map(c["args"]), "k8s trainer")
        self.k8s_secret_files(pod, c, paths, "k8s trainer")
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        self.assertIn("/tmp", mounts, "the server stages TLS files in $TMPDIR; the root fs is "
                                      "read-only")
        sims = [d for d in self.k8s if d["kind"] == "Deployment"
                and d["metadata"]["name"] != "deltaserve"]
        self.assertTrue(sims)
        for sim in sims:
            spod = sim["spec"]["template"]["spec"]
            for sc in spod["containers"]:
                flags = flag_map(shell_exec_argv(sc)[1:])
                self.k8s_secret_files(spod, sc, [flags["tls_ca_file"], flags["token_file"]],
                                      "k8s " + sim["metadata"]["name"])

    def test_k8s_relay_uses_tls_and_tokens_from_secrets_on_both_sides(self):
        """The relay DaemonSet (docker/k8s/relay) serves like the trainer and
        dials it with the simulators' CA and token; under a read-only root it
        needs an emptyDir at /tmp for its TLS files (without one it exited at
        start, found by scripts/kube_test.sh)."""
        relay = only([d for d in yaml.safe_load_all(read("docker/k8s/relay/daemonset.yaml"))
                      if d and d["kind"] == "DaemonSet"], "relay DaemonSet")
        pod = relay["spec"]["template"]["spec"]
        c = only(pod["containers"], "relay container")
        flags = flag_map(c["args"])
        self.assertEqual(port_of(flags["upstream"]), 50051)
        paths = self.assertServesTlsWithTokens(flags, "k8s relay")
        paths += [flags["upstream_tls_ca_file"], flags["upstream_token_file"]]
        self.k8s_secret_files(pod, c, paths, "k8s relay")
        tmp = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}.get("/tmp")
        self.assertIsNotNone(tmp, "k8s relay: the server stages TLS files in $TMPDIR; the root "
                                  "fs is read-only, so /tmp needs a volume")
        self.assertIn("emptyDir", only([v for v in pod["volumes"] if v["name"] == tmp],
                                       "volume " + tmp))
        # kube play 4.3 publishes declared containerPorts on the host, where
        # the trainer's pod holds the same numbers (docs/operations.md).
        self.assertNotIn("ports", c, "k8s relay: a declared containerPort collides with the "
                                     "trainer's when scripts/kube_test.sh plays both on one host")

    def test_compose_uses_tls_and_tokens_from_compose_secrets(self):
        services = self.compose["services"]
        declared = self.compose.get("secrets", {})

        def check(service, paths):
            for path in paths:
                self.assertTrue(path.startswith("/run/secrets/"), "%s: %s" % (service, path))
                name = path[len("/run/secrets/"):]
                self.assertIn(name, services[service].get("secrets", []),
                              "%s does not mount the secret %s" % (service, name))
                self.assertIn(name, declared, "secret %s is not declared" % name)

        trainer = services["trainer"]
        check("trainer", self.assertServesTlsWithTokens(flag_map(trainer["command"]),
                                                        "compose trainer"))
        check("trainer", [flag_map(trainer["healthcheck"]["test"][3:])["tls_ca_file"]])
        sim = services["cartpole"]
        cartpole = flag_map(shell_exec_argv({"command": sim["entrypoint"],
                                             "args": sim["command"]})[1:])
        check("cartpole", [cartpole["tls_ca_file"], cartpole["token_file"]])
        py = flag_map(services["cartpole-py"]["command"])
        check("cartpole-py", [py["tls_ca_file"], py["token_file"]])

    def test_prometheus_scrapes_the_trainer_metrics_port(self):
        metrics = port_of(flag_map(self.compose["services"]["trainer"]["command"])["metrics_listen"])
        config = yaml.safe_load(read("docker/prometheus/prometheus.yml"))
        job = only(config["scrape_configs"], "scrape job")
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")
        targets = only(job["static_configs"], "static config")["targets"]
        self.assertEqual(targets, ["trainer:%d" % metrics])

    # --- metrics: dashboard and docs name only what the server exports ------

    def exported_metrics(self):
        names = set(re.findall(r'\.Name\("(deltaserve_\w+)"\)', read("server/core/metrics.cc")))
        self.assertGreaterEqual(len(names), 10)
        return names

    def test_dashboard_queries_only_exported_metrics(self):
        exported = self.exported_metrics()
        dashboard = json.loads(read("docker/grafana/deltaserve-dashboard.json"))
        used = set()
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                used |= {re.sub(r"_(bucket|sum|count)$", "", m)
                         for m in re.findall(r"deltaserve_\w+", target["expr"])}
        self.assertTrue(used)
        self.assertLessEqual(used, exported, "the dashboard queries metrics nobody exports")

    def test_operations_doc_describes_every_metric(self):
        doc = read("docs/operations.md")
        missing = {m for m in self.exported_metrics() if "`%s`" % m not in doc}
        self.assertFalse(missing, "docs/operations.md does not describe %s" % sorted(missing))


def main():
    global ARGS  # pylint: disable=global-statement
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--server-binary")
    parser.add_argument("--python-stubs")
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
