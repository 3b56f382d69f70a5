"""Semantic checks of the files under deploy/, run by deploy/check.

Each subcommand checks what a schema or linter cannot: that the files say what
the design needs (hardening present, networks separated, policies allowing
exactly the intended connections, config paths mounted). Every problem is
printed; the exit status is 1 if there was any.

    python deploy/check.py systemd   DIR       # unit files
    python deploy/check.py docker    DOCKERFILE
    python deploy/check.py context   REPO OUT  # copy the Docker build context to OUT
    python deploy/check.py compose   COMPOSE_FILE
    python deploy/check.py k8s       DIR
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

PROBLEMS: list[str] = []


def problem(where: str, what: str) -> None:
    PROBLEMS.append(f"{where}: {what}")


def ok(what: str) -> None:
    print(f"  ok  {what}")


# get-service's shutdown (the [shutdown] table every service shares) and its
# rotation journal: the supervisor must wait longer than drain + grace before
# it kills the process, and the journal must be on storage that outlives it.
SHUTDOWN_DEFAULTS = {"drain_secs": 2, "grace_secs": 25}


def shutdown_secs(config: dict) -> tuple[int, int]:
    """(drain_secs, grace_secs) of a service config, with the loader's defaults."""
    table = {**SHUTDOWN_DEFAULTS, **config.get("shutdown", {})}
    return table["drain_secs"], table["grace_secs"]


def duration_secs(text: str, units: dict[str, float]) -> float | None:
    """A duration such as `35s`, `1m30s` (compose, Go) or `1min 30s` (systemd);
    a bare number is seconds. None if it does not parse."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-zµ]+)", text)
    if not parts or re.sub(r"[\d.\sa-zµ]", "", text):
        return None
    total = 0.0
    for number, unit in parts:
        if unit not in units:
            return None
        total += float(number) * units[unit]
    return total


GO_UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
SYSTEMD_UNITS = {"h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "m": 60, "min": 60, "minute": 60,
                 "minutes": 60, "s": 1, "sec": 1, "second": 1, "seconds": 1, "ms": 1e-3, "msec": 1e-3,
                 "us": 1e-6, "usec": 1e-6}


def under(path: str, mount: str) -> bool:
    return path == mount or path.startswith(mount.rstrip("/") + "/")


# ------------------------------------------------------------------ systemd --

UNITS = {
    "tokenvault-set-service.service": ("set-service", "TOKENVAULT_SET_"),
    "tokenvault-get-service.service": ("get-service", "TOKENVAULT_GET_"),
    "tokenvault-web-frontend.service": ("web-frontend", "TOKENVAULT_WEB_"),
    "tokenvault-migrate.service": ("set-service", "TOKENVAULT_SET_"),
}
# The oneshot `set-service migrate`: no config; the owner URL (with its
# password) is a credential that the ExecStart shell puts into this variable.
MIGRATE_UNIT = "tokenvault-migrate.service"
MIGRATE_CREDENTIALS = {"owner-url": "/etc/tokenvault/migrate/owner-url"}
OWNER_URL_VAR = "TOKENVAULT_SET_OWNER_URL"

# Directive -> required value (None: present with any value; "" : present and empty).
REQUIRED_SERVICE = {
    "DynamicUser": "yes",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "LimitCORE": "0",
    "MemoryDenyWriteExecute": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}
REQUIRED_SYSCALL_FILTERS = {"@system-service", "~@privileged"}


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        if current is None or "=" not in line:
            problem(str(path), f"cannot parse line {raw!r}")
            continue
        key, value = line.split("=", 1)
        sections[current].append((key.strip(), value.strip()))
    return sections


def check_systemd(directory: Path) -> None:
    for path in sorted(directory.glob("*.service")):
        if path.name not in UNITS:
            problem(str(path), f"unknown unit: deploy/check.py knows {sorted(UNITS)}")
    for name, (binary, env_prefix) in UNITS.items():
        path = directory / name
        if not path.is_file():
            problem(str(path), "missing")
            continue
        units = [path]
        dropins = directory / f"{name}.d"
        if dropins.is_dir():
            units += sorted(dropins.glob("*.conf"))
        service: list[tuple[str, str]] = []
        for unit in units:
            service += parse_unit(unit).get("Service", [])
        values: dict[str, list[str]] = {}
        for key, value in service:
            values.setdefault(key, []).append(value)
        for key, want in REQUIRED_SERVICE.items():
            got = values.get(key)
            if got is None:
                problem(name, f"missing {key}={want}")
            elif got[-1] != want:
                problem(name, f"{key}={got[-1]!r}, want {want!r}")
        filters = set(values.get("SystemCallFilter", []))
        if not REQUIRED_SYSCALL_FILTERS <= filters:
            problem(name, f"SystemCallFilter must include {sorted(REQUIRED_SYSCALL_FILTERS)}")
        want_type = "oneshot" if name == MIGRATE_UNIT else "exec"
        if values.get("Type", [""])[-1] != want_type:
            problem(name, f"Type={values.get('Type', [''])[-1]!r}, want {want_type!r}")
        exec_start = values.get("ExecStart", [""])[-1]
        if name == MIGRATE_UNIT:
            pass  # checked below, once the credentials are known
        elif not exec_start.startswith(f"/usr/local/bin/{binary} --config %d/{binary}.toml"):
            problem(name, f"ExecStart must run /usr/local/bin/{binary} --config %d/{binary}.toml")
        # Credentials: every %d/<id> used must be loaded; every id loaded is used.
        creds = {}
        for spec in values.get("LoadCredential", []):
            cred_id, _, source = spec.partition(":")
            if not source.startswith("/etc/tokenvault/"):
                problem(name, f"LoadCredential={spec}: the source must be under /etc/tokenvault")
            creds[cred_id] = source
        used = set()
        for env in values.get("Environment", []):
            var, _, val = env.partition("=")
            if not var.startswith(env_prefix):
                problem(name, f"Environment={env}: not a {env_prefix}* override")
            used.update(re.findall(r"%d/([A-Za-z0-9._-]+)", val))
        used.update(re.findall(r"%d/([A-Za-z0-9._-]+)", exec_start))
        for cred in sorted(used - set(creds)):
            problem(name, f"%d/{cred} is used but no LoadCredential={cred}:... loads it")
        pem = [c for c in creds if c.endswith(".pem")]
        if binary == "get-service":
            if "TOKENVAULT_GET_PRIVATE_KEYS_DIR=%d" not in values.get("Environment", []):
                problem(name, "TOKENVAULT_GET_PRIVATE_KEYS_DIR must be %d")
            if not pem:
                problem(name, "no private key credential (<kid>.pem) in the unit or its drop-ins")
            for cred in pem:
                if not creds[cred].startswith("/etc/tokenvault/get-service/private-keys/"):
                    problem(name, f"{cred}: only private keys may be .pem credentials (%d is private_keys_dir)")
        elif pem:
            problem(name, f"unexpected .pem credentials {pem}")
        unused = set(creds) - used - set(pem)
        if unused:
            problem(name, f"credentials loaded but never referenced: {sorted(unused)}")
        if name == MIGRATE_UNIT:
            check_migrate_unit(name, exec_start, creds, values)
        if binary == "get-service":
            check_get_service_unit(name, values, directory.parent / "examples/get-service.toml")
        ok(f"{name}: hardening directives and credentials ({len(creds)} loaded)")


def check_get_service_unit(name: str, values: dict, example: Path) -> None:
    """The unit runs the example config as it is: its rotation journal must be in the
    unit's StateDirectory= (the one writable, persistent path of a DynamicUser= service),
    and TimeoutStopSec= must let the drain and the grace period run out."""
    before = len(PROBLEMS)
    config = tomllib.loads(example.read_text())
    journal = config.get("rotation", {}).get("journal_dir")
    states = " ".join(values.get("StateDirectory", [])).split()
    if not journal:
        problem(str(example), "rotation.journal_dir must be set (the unit keeps it in its StateDirectory)")
    elif not any(under(journal, f"/var/lib/{d}") and journal != f"/var/lib/{d}" for d in states):
        problem(name, f"rotation.journal_dir = {journal} (in {example.name}) must be inside "
                f"/var/lib/<StateDirectory=>, got StateDirectory={states}")
    if values.get("StateDirectoryMode", ["0755"])[-1] not in ("0700", "700"):
        problem(name, "StateDirectoryMode must be 0700 (the journal holds sealed refresh tokens)")
    drain, grace = shutdown_secs(config)
    stop = duration_secs(values.get("TimeoutStopSec", ["90s"])[-1], SYSTEMD_UNITS)
    if stop is None or stop <= drain + grace:
        problem(name, f"TimeoutStopSec={values.get('TimeoutStopSec', ['(default)'])[-1]} must be longer "
                f"than shutdown.drain_secs + grace_secs = {drain} + {grace} s ({example.name})")
    if len(PROBLEMS) == before:
        ok(f"{name}: journal {journal} in its StateDirectory; TimeoutStopSec {stop:g} s > {drain} + {grace} s")


def check_migrate_unit(name: str, exec_start: str, creds: dict, values: dict) -> None:
    """The owner URL holds a password: it is a credential, never in Environment= (which
    `systemctl show` prints to anyone) nor on the command line (the process list). The
    ExecStart shell must hand it to `set-service migrate` in TOKENVAULT_SET_OWNER_URL:
    run it as systemd would (%d resolved, $$ -> $) with a stub set-service that records
    its arguments and that variable."""
    before = len(PROBLEMS)
    if creds != MIGRATE_CREDENTIALS:
        problem(name, f"LoadCredential= must be exactly {MIGRATE_CREDENTIALS}, got {creds}")
    for env in values.get("Environment", []) + values.get("EnvironmentFile", []):
        problem(name, f"{env}: the migrate unit needs no environment (the owner URL is a credential)")
    if "--owner-url" in exec_start or "--config" in exec_start:
        problem(name, "ExecStart must pass neither --owner-url (the process list) nor --config")
    if "$" in exec_start.replace("$$", ""):
        problem(name, "a lone $ in ExecStart is systemd's own expansion; write $$ for the shell")
    if "/usr/local/bin/set-service migrate" not in exec_start:
        problem(name, "ExecStart must run /usr/local/bin/set-service migrate")
        return
    with tempfile.TemporaryDirectory() as tmp:
        cred_dir = Path(tmp) / "credentials"
        cred_dir.mkdir()
        url = "postgres://tokenvault_owner:p%40ss%24word'x@db.internal:5432/tokenvault"
        for cred_id in creds:
            (cred_dir / cred_id).write_text(url + "\n")
            (cred_dir / cred_id).chmod(0o400)
        record = Path(tmp) / "record"
        stub = Path(tmp) / "set-service"
        stub.write_text(f'''#!/bin/sh
{{ printf '%s\\n' "$#" "$@"; printf '%s' "${{{OWNER_URL_VAR}-UNSET}}"; }} >{shlex.quote(str(record))}
''')
        stub.chmod(0o755)
        argv = shlex.split(exec_start.replace("%d", str(cred_dir)).replace("$$", "$"))
        argv = [a.replace("/usr/local/bin/set-service", str(stub)) for a in argv]
        env = {"PATH": "/usr/bin:/bin", "CREDENTIALS_DIRECTORY": str(cred_dir)}
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        if run.returncode != 0 or not record.exists():
            problem(name, f"ExecStart failed ({run.returncode}): {run.stderr.strip()}")
            return
        lines = record.read_text().split("\n")
        if lines[:2] != ["1", "migrate"]:
            problem(name, f"set-service got the arguments {lines[1:-1]}, want ['migrate']")
        if lines[-1] != url:
            problem(name, f"set-service got {OWNER_URL_VAR}={lines[-1]!r}, want the credential {url!r}")
        # A missing credential must fail the unit, not run set-service without a URL.
        for cred_id in creds:
            (cred_dir / cred_id).unlink()
        record.unlink()
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        if run.returncode == 0 or record.exists():
            problem(name, "ExecStart ran set-service although the owner-url credential was missing")
    if len(PROBLEMS) == before:
            ok(f"{name}: ExecStart hands the owner-url credential to `set-service migrate` in {OWNER_URL_VAR}")


# ------------------------------------------------------------------- docker --

SERVICE_TARGETS = {
    "set-service": ("tokenvault-set-service", {"7401", "7411"}),
    "get-service": ("tokenvault-get-service", {"7402", "7412"}),
    "web-frontend": ("tokenvault-web-frontend", {"7403"}),
}


def dockerfile_stages(path: Path) -> dict[str, list[str]]:
    text = path.read_text().replace("\\\n", " ")
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.I)
        if m:
            current = m.group(2) or f"stage{len(stages)}"
            stages[current] = [f"FROM {m.group(1)}"]
            continue
        if current is not None:
            stages[current].append(line)
    return stages


def check_docker(path: Path) -> None:
    stages = dockerfile_stages(path)
    for target, (package, ports) in SERVICE_TARGETS.items():
        final = stages.get(target)
        build = stages.get(f"build-{target}")
        if final is None or build is None:
            problem(str(path), f"needs stages {target} and build-{target}")
            continue
        if not any(f"cargo build --release --locked -p {package}" in line for line in build):
            problem(str(path), f"build-{target} must run cargo build --release --locked -p {package}")
        check_runtime_stage(path, target, final, stages)
        expose = {p for line in final if line.upper().startswith("EXPOSE ") for p in line.split()[1:]}
        if expose != ports:
            problem(str(path), f"{target}: EXPOSE {sorted(expose)}, want {sorted(ports)}")
        entry = [line for line in final if line.upper().startswith("ENTRYPOINT")]
        if entry != [f'ENTRYPOINT ["/usr/local/bin/{target}"]']:
            problem(str(path), f"{target}: ENTRYPOINT must be the exec form of /usr/local/bin/{target}")
    if "migrate" in stages:
        check_migrate_stage(path, stages)
    else:
        problem(str(path), "needs a migrate stage")
    ok(f"{path}: {len(stages)} stages; multi-stage builds, non-root distroless runtime targets")


def check_migrate_stage(path: Path, stages: dict[str, list[str]]) -> None:
    """`migrate` is set-service's binary from its builder, started as `set-service migrate`
    (the migrations are compiled in): no other tool, no migrations directory, no port."""
    lines = stages["migrate"]
    check_runtime_stage(path, "migrate", lines, stages)
    copies = [line for line in lines if line.upper().startswith(("COPY", "ADD"))]
    if copies != ["COPY --from=build-set-service /out/set-service /usr/local/bin/set-service"]:
        problem(str(path), f"migrate: must copy only set-service from build-set-service, got {copies}")
    entry = [line for line in lines if line.upper().startswith("ENTRYPOINT")]
    if entry != ['ENTRYPOINT ["/usr/local/bin/set-service", "migrate"]']:
        problem(str(path), 'migrate: ENTRYPOINT must be ["/usr/local/bin/set-service", "migrate"]')
    if any(line.upper().startswith(("EXPOSE", "CMD")) for line in lines):
        problem(str(path), "migrate: a one-shot job exposes no port and takes no CMD")
    for stage, body in stages.items():
        if any("sqlx" in line for line in body):
            problem(str(path), f"{stage}: sqlx-cli is gone; migrations run as `set-service migrate`")


def check_runtime_stage(path: Path, target: str, lines: list[str], stages: dict[str, list[str]]) -> None:
    base = lines[0].split()[1]
    if base in stages:
        problem(str(path), f"{target}: the runtime stage must start from the runtime image, not {base}")
    if "RUNTIME_IMAGE" not in base:
        problem(str(path), f"{target}: FROM {base}; use ${{RUNTIME_IMAGE}} (distroless)")
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problem(str(path), f"{target}: the last USER must be non-root (got {users})")
    if any(line.upper().startswith("RUN ") for line in lines):
        problem(str(path), f"{target}: a RUN in the runtime stage needs a shell; the runtime image has none")
    for line in lines:
        m = re.match(r"COPY\s+--from=(\S+)", line, re.I)
        if m and m.group(1) not in stages:
            problem(str(path), f"{target}: COPY --from={m.group(1)} names no stage")


def copy_context(repo: Path, out: Path) -> None:
    """Copies what `docker build -f deploy/docker/Dockerfile <repo>` would send."""
    from docker.utils.build import exclude_paths  # the Docker SDK's .dockerignore rules

    ignore = repo / "deploy/docker/Dockerfile.dockerignore"
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    files = sorted(exclude_paths(str(repo), patterns))
    for rel in files:
        src = repo / rel
        if src.is_file() and not src.is_symlink():
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    kept = set(files)
    for must in ["Cargo.toml", "Cargo.lock", "lib/store/migrations/postgres"]:
        if not any(f == must or f.startswith(must + "/") for f in kept):
            problem(str(ignore), f"{must} is not in the build context")
    for never in ["target/", "state/", ".git/", "tests/oidc/node_modules/"]:
        if any(f.startswith(never) for f in kept):
            problem(str(ignore), f"{never} is in the build context")
    ok(f"{ignore}: build context of {len(files)} files copied to {out}")


# ------------------------------------------------------------------ compose --

HARDENED = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}


def check_compose(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    services = doc["services"]
    networks = doc.get("networks", {})
    secrets = doc.get("secrets", {})
    dockerfile = path.parent.parent / "docker/Dockerfile"
    stages = dockerfile_stages(dockerfile)

    def nets(name: str) -> set[str]:
        n = services[name].get("networks", [])
        return set(n if isinstance(n, list) else n.keys())

    shared = nets("web-frontend") & nets("get-service")
    if shared:
        problem(str(path), f"web-frontend and get-service share networks {sorted(shared)}")
    if not nets("web-frontend") & nets("set-service"):
        problem(str(path), "web-frontend cannot reach set-service (no shared network)")
    if not nets("get-service") & nets("set-service"):
        problem(str(path), "get-service cannot reach set-service (no shared network)")
    for name in services:
        if "postgres" in nets(name) and name != "postgres":
            problem(str(path), f"{name} is on postgres's network")
    for net in nets("postgres"):
        members = {s for s in services if net in nets(s)}
        allowed = {"postgres", "set-service", "get-service", "db-setup", "migrate"}
        if not members <= allowed:
            problem(str(path), f"network {net} (with postgres) also has {sorted(members - allowed)}")
    for net in ["ingest", "store", "workers"]:
        if not networks.get(net, {}).get("internal"):
            problem(str(path), f"network {net} must be internal")
    for name, svc in services.items():
        user = str(svc.get("user", ""))
        if not user or user.split(":")[0] in ("0", "root"):
            problem(str(path), f"{name}: must run as a non-root user")
        for key, want in HARDENED.items():
            if svc.get(key) != want:
                problem(str(path), f"{name}: {key} must be {want}")
        for ref in svc.get("secrets", []):
            source = ref if isinstance(ref, str) else ref["source"]
            if source not in secrets:
                problem(str(path), f"{name}: secret {source} is not defined")
        if "ports" in svc and name != "web-frontend":
            problem(str(path), f"{name}: only web-frontend publishes a port")
        build = svc.get("build")
        if build:
            if build.get("dockerfile") != "deploy/docker/Dockerfile" or build.get("target") not in stages:
                problem(str(path), f"{name}: build must name deploy/docker/Dockerfile and one of its targets")
            if (path.parent / build["context"]).resolve() != path.parent.parent.parent.resolve():
                problem(str(path), f"{name}: the build context must be the repository root")
    for name in ["set-service", "get-service", "web-frontend"]:
        svc = services[name]
        targets = {
            "/run/secrets/" + (r if isinstance(r, str) else r.get("target", r["source"])) for r in svc["secrets"]
        }
        mounts = {v.split(":")[1] for v in svc.get("volumes", [])}
        cfg_secret = next(r for r in svc["secrets"] if isinstance(r, dict) and r["target"].endswith(".toml"))
        template = path.parent / "config" / cfg_secret["target"]
        if f"./secrets/{cfg_secret['target']}" != secrets[cfg_secret["source"]]["file"]:
            problem(str(path), f"{name}: its config secret must be ./secrets/{cfg_secret['target']}")
        for setting, value in toml_paths(tomllib.loads(template.read_text())):
            if not (value in targets or any(value == m or value.startswith(m + "/") for m in mounts)):
                problem(str(template), f"{setting} = {value} is not mounted into {name}")
        if svc.get("command", [None, None])[1] not in targets:
            problem(str(path), f"{name}: --config must name a mounted secret")
    for key, spec in secrets.items():
        if not spec.get("file", "").startswith("./secrets/"):
            problem(str(path), f"secret {key} must come from ./secrets (made by init-secrets)")
    check_compose_migrate(path, services, secrets)
    check_compose_get_service(path, doc, stages)
    ok(f"{path}: {len(services)} services non-root and read-only; web-frontend and get-service share no network")


def check_compose_get_service(path: Path, doc: dict, stages: dict[str, list[str]]) -> None:
    """get-service runs several replicas: no fixed container name, the rotation journal
    on a named volume (shared by the replicas; it must outlive the containers) whose
    mount point the image creates for the containers' user (a new volume takes that
    directory's owner), and a stop_grace_period longer than drain + grace."""
    before = len(PROBLEMS)
    svc = doc["services"]["get-service"]
    replicas = svc.get("deploy", {}).get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 2:
        problem(str(path), f"get-service: deploy.replicas must be at least 2, got {replicas}")
    if "container_name" in svc:
        problem(str(path), "get-service: no container_name (replicas cannot share one)")
    config = tomllib.loads((path.parent / "config/get-service.toml").read_text())
    journal = config.get("rotation", {}).get("journal_dir")
    mounts = []
    for v in svc.get("volumes", []):
        source, target = v.split(":")[:2]
        mounts.append((source, target))
    volume = next(((src, dst) for src, dst in mounts if journal and under(journal, dst)), None)
    if not journal:
        problem(str(path), "get-service: rotation.journal_dir must be set in config/get-service.toml")
    elif volume is None:
        problem(str(path), f"get-service: rotation.journal_dir = {journal} is not under a volume")
    else:
        source, target = volume
        if source.startswith((".", "/", "~", "$")) or source not in (doc.get("volumes") or {}):
            problem(str(path), f"get-service: the journal ({target}) must be a named volume defined under "
                    f"volumes:, not {source}")
        user = str(svc.get("user", "")).split(":")[0]
        chown = re.compile(rf"COPY\s+(?=.*--from=)(?=.*--chown={re.escape(user)}(:\S*)?\s).*\s"
                           rf"{re.escape(target.rstrip('/'))}/?$", re.I)
        if not any(chown.match(line) for line in stages.get(svc.get("build", {}).get("target", ""), [])):
            problem(str(path), f"get-service: the image must create {target} owned by {user} "
                    f"(COPY --chown={user}:... in its Dockerfile target), or the new volume is root's")
    drain, grace = shutdown_secs(config)
    stop = duration_secs(svc.get("stop_grace_period", "10s"), GO_UNITS)
    if stop is None or stop <= drain + grace:
        problem(str(path), f"get-service: stop_grace_period {svc.get('stop_grace_period', '(default 10s)')} "
                f"must be longer than shutdown.drain_secs + grace_secs = {drain} + {grace} s")
    if len(PROBLEMS) == before:
        ok(f"{path}: get-service: {replicas} replicas, journal {journal} on volume {volume[0]}, "
           f"stop_grace_period {stop:g} s > {drain} + {grace} s")


def owner_url_problems(url: str | None, host: str) -> list[str]:
    """The owner URL given to `set-service migrate` in a plain environment entry: it names
    tokenvault_owner at `host` and holds no password (that comes from a secret)."""
    from urllib.parse import urlsplit

    if not url:
        return [f"{OWNER_URL_VAR} must be set (set-service migrate reads the owner URL from it)"]
    u = urlsplit(url)
    found = []
    if u.scheme not in ("postgres", "postgresql") or u.username != "tokenvault_owner" or u.hostname != host:
        found.append(f"{OWNER_URL_VAR}={url}: want postgres://tokenvault_owner@{host}:5432/tokenvault")
    if u.password is not None:
        found.append(f"{OWNER_URL_VAR} must hold no password (it comes from a secret)")
    return found


def check_compose_migrate(path: Path, services: dict, secrets: dict) -> None:
    """The migrate job is the image's `set-service migrate`; the owner URL in
    TOKENVAULT_SET_OWNER_URL, the owner's password in the pgpass secret (PGPASSFILE)."""
    svc = services.get("migrate")
    if svc is None:
        problem(str(path), "needs the one-shot service migrate")
        return
    if svc.get("build", {}).get("target") != "migrate":
        problem(str(path), "migrate: must build the Dockerfile target migrate")
    for key in ["command", "entrypoint"]:
        if key in svc:
            problem(str(path), f"migrate: no {key}: the image's entrypoint is `set-service migrate`")
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    for p in owner_url_problems(env.get(OWNER_URL_VAR), "postgres"):
        problem(str(path), f"migrate: {p}")
    for stale in ["DATABASE_URL", "PGPASSWORD"]:
        if stale in env:
            problem(str(path), f"migrate: {stale} has no place here (set-service migrate reads "
                    f"{OWNER_URL_VAR}; the password comes from the pgpass secret)")
    refs = {(r if isinstance(r, str) else r.get("target", r["source"])): (r if isinstance(r, str) else r["source"])
            for r in svc.get("secrets", [])}
    passfile = env.get("PGPASSFILE", "")
    source = refs.get(passfile.removeprefix("/run/secrets/")) if passfile.startswith("/run/secrets/") else None
    if source is None or secrets.get(source, {}).get("file") != "./secrets/pgpass-owner":
        problem(str(path), "migrate: PGPASSFILE must name the mounted secret ./secrets/pgpass-owner")
    if svc.get("depends_on", {}).get("db-setup", {}).get("condition") != "service_completed_successfully":
        problem(str(path), "migrate: must wait for db-setup to complete successfully")
    for name in ["set-service", "get-service"]:
        if services[name].get("depends_on", {}).get("migrate", {}).get("condition") != "service_completed_successfully":
            problem(str(path), f"{name}: must wait for migrate to complete successfully")


def toml_paths(doc, prefix=""):
    """(setting, value) for every string setting that is an absolute path."""
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from toml_paths(value, name + ".")
        elif isinstance(value, str) and value.startswith("/"):
            yield name, value


# --------------------------------------------------------------------- k8s --

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
}
PROBES = {
    "set-service": ("grpc", 7411, "tokenvault.v1.SetService"),
    "get-service": ("grpc", 7412, "tokenvault.v1.GetService"),
    "web-frontend": ("httpGet", "http", "/healthz"),
}


WORKLOAD_KINDS = ["Deployment", "StatefulSet", "Job"]


def load_k8s(directory: Path) -> list[dict]:
    docs = []
    for f in sorted(directory.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                d["__file"] = f.name
                docs.append(d)
    return docs


def check_k8s(directory: Path) -> None:
    docs = load_k8s(directory)
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "tokenvault":
            problem(d["__file"], f"{d['kind']}/{d['metadata']['name']} must be in namespace tokenvault")
    for d in by_kind.get("Secret", {}).values():
        if "template" in d["__file"] and "REPLACE-ME" not in yaml.safe_dump(d.get("stringData", {})):
            problem(d["__file"], f"Secret {d['metadata']['name']}: template data must be marked REPLACE-ME")
    workloads = [w for kind in WORKLOAD_KINDS for w in by_kind.get(kind, {}).values()]
    pods = {}
    configs = {}
    for w in workloads:
        name = w["metadata"]["name"]
        spec = w["spec"]["template"]["spec"]
        pods[name] = w["spec"]["template"]["metadata"]["labels"]
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problem(w["__file"], f"{name}: pod needs runAsNonRoot: true and seccompProfile RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problem(w["__file"], f"{name}: automountServiceAccountToken must be false")
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            for key, want in RESTRICTED_CONTAINER.items():
                if sc.get(key) is not want:
                    problem(w["__file"], f"{name}/{c['name']}: securityContext.{key} must be {want}")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problem(w["__file"], f"{name}/{c['name']}: must drop ALL capabilities")
            if "limits" not in c.get("resources", {}):
                problem(w["__file"], f"{name}/{c['name']}: needs resource limits")
        if name in PROBES:
            check_probes(w, spec["containers"][0])
            configs[name] = check_config_mounts(w, spec, by_kind)
    check_k8s_migrate(by_kind.get("Job", {}).get("tokenvault-migrate"))
    check_k8s_get_service(by_kind, configs.get("get-service"))
    check_network_policies(list(by_kind.get("NetworkPolicy", {}).values()), pods)
    ok(f"{directory}: {len(docs)} objects; restricted pod security, probes, mounts, network policies")


def check_k8s_migrate(job: dict | None) -> None:
    """The migration Job runs the migrate image's `set-service migrate`: the owner URL in
    TOKENVAULT_SET_OWNER_URL (no password), the password from Secret tokenvault-db."""
    if job is None:
        problem("50-migrate-job.yaml", "needs the Job tokenvault-migrate")
        return
    where = job["__file"]
    containers = job["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        problem(where, "tokenvault-migrate: one container")
        return
    c = containers[0]
    if not re.search(r"/tokenvault/migrate:[^/]+$", c.get("image", "")):
        problem(where, "tokenvault-migrate: the image must be tokenvault/migrate")
    for key in ["command", "args"]:
        if key in c:
            problem(where, f"tokenvault-migrate: no {key}: the image's entrypoint is `set-service migrate`")
    env = {e["name"]: e for e in c.get("env", [])}
    url = env.get(OWNER_URL_VAR, {})
    if "valueFrom" not in url:
        for p in owner_url_problems(url.get("value"), "postgres.tokenvault.svc"):
            problem(where, f"tokenvault-migrate: {p}")
    ref = env.get("PGPASSWORD", {}).get("valueFrom", {}).get("secretKeyRef", {})
    if (ref.get("name"), ref.get("key")) != ("tokenvault-db", "owner-password"):
        problem(where, "tokenvault-migrate: PGPASSWORD must come from Secret tokenvault-db, key owner-password")
    if "DATABASE_URL" in env:
        problem(where, f"tokenvault-migrate: DATABASE_URL has no place here (set-service migrate reads {OWNER_URL_VAR})")


def check_k8s_get_service(by_kind: dict, config: dict | None) -> None:
    """get-service: a StatefulSet of several replicas, updated one pod at a time, with a
    PodDisruptionBudget, the rotation journal on each pod's own PersistentVolume, a
    termination grace period longer than drain + grace, a readiness probe that notices
    the drain, and a headless Service (every replica's address) beside the ClusterIP one."""
    where = "31-get-service.yaml"
    before = len(PROBLEMS)
    if "get-service" in by_kind.get("Deployment", {}):
        problem(where, "get-service must be a StatefulSet (each pod its own journal volume), not a Deployment")
    sts = by_kind.get("StatefulSet", {}).get("get-service")
    if sts is None or config is None:
        problem(where, "needs the StatefulSet get-service")
        return
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    replicas = spec.get("replicas", 1)
    if replicas < 2:
        problem(where, f"get-service: replicas must be at least 2, got {replicas}")
    if spec.get("updateStrategy", {}).get("type", "RollingUpdate") != "RollingUpdate":
        problem(where, "get-service: updateStrategy must be RollingUpdate")
    # A PodDisruptionBudget that selects the pods, keeps one up and lets one go.
    pdbs = [p for p in by_kind.get("PodDisruptionBudget", {}).values() if selects(p["spec"].get("selector"), labels)]
    if not pdbs:
        problem(where, "get-service: no PodDisruptionBudget selects its pods")
    for p in pdbs:
        def count(value):
            if isinstance(value, str) and value.endswith("%"):
                return int(value[:-1]) * replicas // 100
            return value
        max_unavailable, min_available = (count(p["spec"].get(k)) for k in ("maxUnavailable", "minAvailable"))
        allowed = max_unavailable if max_unavailable is not None else replicas - (min_available or 0)
        if replicas >= 2 and not 1 <= allowed < replicas:
            problem(where, f"PodDisruptionBudget {p['metadata']['name']}: must allow 1 to {replicas - 1} "
                    f"of {replicas} pods down, allows {allowed}")
    # Stopping: the kubelet must wait out drain + grace, and readiness must see the drain.
    drain, grace = shutdown_secs(config)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if tgps <= drain + grace:
        problem(where, f"get-service: terminationGracePeriodSeconds {tgps} must be longer than "
                f"shutdown.drain_secs + grace_secs = {drain} + {grace}")
    ready = pod["containers"][0].get("readinessProbe", {})
    noticed = ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3)
    if noticed > drain:
        problem(where, f"get-service: the readiness probe notices NOT_SERVING after up to {noticed} s "
                f"(periodSeconds x failureThreshold), longer than shutdown.drain_secs {drain}")
    # The journal: under a mount of a volumeClaimTemplate (never an emptyDir), in a
    # directory of its own (the volume's root is group-writable for fsGroup, and
    # get-service refuses a journal directory that its group may open).
    journal = config.get("rotation", {}).get("journal_dir")
    templates = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    mount = next((m for path, m in mounts.items() if journal and under(journal, path)), None)
    if not journal:
        problem(where, "get-service: rotation.journal_dir must be set (on a PersistentVolume)")
    elif mount is None or mount["name"] not in templates:
        problem(where, f"get-service: rotation.journal_dir = {journal} must be under a volumeMount of a "
                "volumeClaimTemplate (a PersistentVolume per pod), not an emptyDir or a Secret")
    else:
        template = templates[mount["name"]]["spec"]
        if mount.get("readOnly"):
            problem(where, f"get-service: the journal mount {mount['mountPath']} must be writable")
        if journal.rstrip("/") == mount["mountPath"].rstrip("/"):
            problem(where, f"get-service: rotation.journal_dir must be a directory inside {mount['mountPath']}, "
                    "not the volume's group-writable root")
        if "ReadWriteOnce" not in template.get("accessModes", []) and \
                "ReadWriteOncePod" not in template.get("accessModes", []):
            problem(where, "get-service: the journal volumeClaimTemplate must be ReadWriteOnce(Pod)")
        if "storage" not in template.get("resources", {}).get("requests", {}):
            problem(where, "get-service: the journal volumeClaimTemplate must request storage")
        psc = pod.get("securityContext", {})
        if psc.get("fsGroup") is None or psc.get("fsGroup") != psc.get("runAsGroup"):
            problem(where, "get-service: fsGroup must be the pod's group, so that it may write the journal volume")
    # Services: the ClusterIP one, and a headless one (the StatefulSet's serviceName).
    services = [v for v in by_kind.get("Service", {}).values() if selects({"matchLabels": v["spec"].get("selector", {})},
                                                                          labels) and v["spec"].get("selector")]
    headless = [v for v in services if v["spec"].get("clusterIP") == "None"]
    if not any(v["spec"].get("clusterIP") != "None" for v in services):
        problem(where, "get-service: needs a ClusterIP Service selecting its pods")
    if spec.get("serviceName") not in {v["metadata"]["name"] for v in headless}:
        problem(where, f"get-service: serviceName {spec.get('serviceName')} must be a headless Service "
                "(clusterIP: None) selecting its pods")
    for v in headless:
        if v["spec"].get("publishNotReadyAddresses"):
            problem(where, f"Service {v['metadata']['name']}: must not publish unready (draining) replicas")
    if len(PROBLEMS) == before:
        ok(f"get-service: StatefulSet of {replicas}, RollingUpdate, PodDisruptionBudget; journal {journal} "
           f"on volumeClaimTemplate {mount['name']}; grace {tgps} s > {drain} + {grace} s; readiness within "
           f"{noticed} s; headless Service {spec['serviceName']}")


def check_probes(w: dict, c: dict) -> None:
    name = w["metadata"]["name"]
    kind, port, what = PROBES[name]
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"]:
        p = c.get(probe)
        if not p or kind not in p:
            problem(w["__file"], f"{name}: {probe} must use {kind}")
            continue
        if p[kind]["port"] != port:
            problem(w["__file"], f"{name}: {probe} must probe port {port}")
        if kind == "httpGet" and p[kind]["path"] != what:
            problem(w["__file"], f"{name}: {probe} must GET {what}")
    if kind == "grpc" and c["readinessProbe"]["grpc"].get("service") != what:
        problem(w["__file"], f"{name}: readinessProbe must ask for service {what}")


def check_config_mounts(w: dict, spec: dict, by_kind: dict) -> dict:
    """The embedded TOML's paths must be mounted, and health_listen must match the probe port.
    A StatefulSet's volumeClaimTemplates are volumes too. Returns the parsed config."""
    name = w["metadata"]["name"]
    c = spec["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for t in w["spec"].get("volumeClaimTemplates", []):
        volumes[t["metadata"]["name"]] = {"persistentVolumeClaim": t["spec"]}
    for m in mounts:
        if m not in volumes:
            problem(w["__file"], f"{name}: volumeMount {m} names no volume or volumeClaimTemplate")
    config_path = c["args"][1]
    config_dir, config_file = config_path.rsplit("/", 1)
    vol = next(v for n, v in volumes.items() if mounts.get(n) == config_dir)
    if "configMap" in vol:
        text = by_kind["ConfigMap"][vol["configMap"]["name"]]["data"][config_file]
    else:
        text = by_kind["Secret"][vol["secret"]["secretName"]]["stringData"][config_file]
    config = tomllib.loads(text)
    for setting, value in toml_paths(config):
        if not any(value == m or value.startswith(m + "/") for m in mounts.values()):
            problem(w["__file"], f"{name}: {setting} = {value} is not under a volumeMount")
    ports = {p["containerPort"] for p in c["ports"]}
    for key in ["listen", "health_listen"]:
        if key in config and int(config[key].rsplit(":", 1)[1]) not in ports:
            problem(w["__file"], f"{name}: {key} {config[key]} is not a containerPort")
    if name != "web-frontend" and config.get("health_listen", "").rsplit(":", 1)[-1] != str(PROBES[name][1]):
        problem(w["__file"], f"{name}: health_listen must be the probes' port {PROBES[name][1]}")
    return config


# NetworkPolicy evaluation: enough of the semantics for the selectors used here.


def selects(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return True
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        present = e["key"] in labels
        op = e["operator"]
        if op == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if op == "NotIn" and labels.get(e["key"]) in e["values"]:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


NS_LABELS = {"kubernetes.io/metadata.name": "tokenvault", "tokenvault.io/workers": "allowed"}


def peer_matches(peer: dict, pod: dict) -> bool:
    """pod: {labels, ns_labels, ip} (ip set for addresses outside the cluster)."""
    if "ipBlock" in peer:
        if pod.get("ip") is None:
            return False
        ip = ipaddress.ip_address(pod["ip"])
        block = peer["ipBlock"]
        net = ipaddress.ip_network(block["cidr"])
        if ip.version != net.version or ip not in net:
            return False
        return not any(
            ip.version == ipaddress.ip_network(x).version and ip in ipaddress.ip_network(x)
            for x in block.get("except", [])
        )
    if pod.get("ip") is not None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], pod["ns_labels"]):
            return False
    elif pod["ns_labels"] != NS_LABELS:
        return False  # a bare podSelector means the policy's own namespace
    return selects(peer.get("podSelector"), pod["labels"])


def port_matches(ports: list | None, port: int, proto: str = "TCP") -> bool:
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == proto and p.get("port") in (None, port) for p in ports)


def direction_allows(policies, pod, direction, peer, port) -> bool:
    key, peers_key, kind = (
        ("ingress", "from", "Ingress") if direction == "in" else ("egress", "to", "Egress")
    )
    applicable = [
        p for p in policies if kind in p["spec"].get("policyTypes", []) and selects(p["spec"]["podSelector"], pod)
    ]
    if not applicable:
        return True  # not isolated in this direction
    for p in applicable:
        for rule in p["spec"].get(key, []):
            peers = rule.get(peers_key)
            if not port_matches(rule.get("ports"), port):
                continue
            if not peers or any(peer_matches(x, peer) for x in peers):
                return True
    return False


def check_network_policies(policies: list[dict], pods: dict[str, dict]) -> None:
    role = {labels["tokenvault.io/role"]: labels for labels in pods.values()}
    role["worker"] = {"tokenvault.io/role": "worker"}
    role["admin"] = {"tokenvault.io/role": "admin"}
    role["postgres"] = {"tokenvault.io/role": "postgres"}
    role["other"] = {"app": "something-else"}

    def pod(name, ns=None):
        return {"labels": role[name], "ns_labels": ns or NS_LABELS}

    foreign_ns = {"kubernetes.io/metadata.name": "elsewhere"}
    opted_in_ns = {"kubernetes.io/metadata.name": "jobs", "tokenvault.io/workers": "allowed"}
    internet = {"labels": {}, "ns_labels": {}, "ip": "142.250.0.10"}
    private = {"labels": {}, "ns_labels": {}, "ip": "10.1.2.3"}
    dns = {"labels": {"k8s-app": "kube-dns"}, "ns_labels": {"kubernetes.io/metadata.name": "kube-system"}}
    receiver = {"labels": {"tokenvault.io/webhooks": "receiver"},
                "ns_labels": {"kubernetes.io/metadata.name": "app", "tokenvault.io/webhooks": "allowed"}}
    unlabelled_elsewhere = {"labels": {"app": "x"},
                            "ns_labels": {"kubernetes.io/metadata.name": "app", "tokenvault.io/webhooks": "allowed"}}

    def allowed(src, dst, port, src_in_ns=True, dst_in_ns=True):
        out = not src_in_ns or direction_allows(policies, src["labels"], "out", dst, port)
        into = not dst_in_ns or direction_allows(policies, dst["labels"], "in", src, port)
        return out and into

    cases = [
        # (description, src, dst, port, src in our namespace, dst in our namespace, expected)
        ("worker -> get-service gRPC", pod("worker"), pod("get-service"), 7402, True, True, True),
        ("worker in an opted-in namespace -> get-service", pod("worker", opted_in_ns), pod("get-service"),
         7402, False, True, True),
        ("worker in another namespace -> get-service", pod("worker", foreign_ns), pod("get-service"),
         7402, False, True, False),
        ("admin -> get-service gRPC (the inventory)", pod("admin"), pod("get-service"), 7402, True, True, True),
        ("admin -> set-service", pod("admin"), pod("set-service"), 7401, True, True, False),
        ("unlabelled pod -> get-service", pod("other"), pod("get-service"), 7402, True, True, False),
        ("web-frontend -> get-service", pod("web-frontend"), pod("get-service"), 7402, True, True, False),
        ("web-frontend -> get-service health", pod("web-frontend"), pod("get-service"), 7412, True, True, False),
        ("set-service -> get-service", pod("set-service"), pod("get-service"), 7402, True, True, False),
        ("web-frontend -> set-service", pod("web-frontend"), pod("set-service"), 7401, True, True, True),
        ("get-service -> set-service", pod("get-service"), pod("set-service"), 7401, True, True, True),
        ("worker -> set-service", pod("worker"), pod("set-service"), 7401, True, True, False),
        ("set-service -> postgres", pod("set-service"), pod("postgres"), 5432, True, True, True),
        ("get-service -> postgres", pod("get-service"), pod("postgres"), 5432, True, True, True),
        ("migrate -> postgres", pod("migrate"), pod("postgres"), 5432, True, True, True),
        ("web-frontend -> postgres", pod("web-frontend"), pod("postgres"), 5432, True, True, False),
        ("worker -> postgres", pod("worker"), pod("postgres"), 5432, True, True, False),
        ("the internet -> web-frontend", internet, pod("web-frontend"), 7403, False, True, True),
        ("web-frontend -> provider 443", pod("web-frontend"), internet, 443, True, False, True),
        ("get-service -> provider 443", pod("get-service"), internet, 443, True, False, True),
        ("set-service -> provider 443", pod("set-service"), internet, 443, True, False, False),
        ("set-service -> webhook receiver 443", pod("set-service"), receiver, 443, True, False, True),
        ("set-service -> other pod 443 elsewhere", pod("set-service"), unlabelled_elsewhere, 443, True, False, False),
        ("web-frontend -> private address 443", pod("web-frontend"), private, 443, True, False, False),
        ("web-frontend -> cluster DNS", pod("web-frontend"), dns, 53, True, False, True),
        ("get-service -> cluster DNS", pod("get-service"), dns, 53, True, False, True),
    ]
    for what, src, dst, port, src_in, dst_in, expected in cases:
        got = allowed(src, dst, port, src_in, dst_in)
        if got != expected:
            problem("40-network-policies.yaml", f"{what}: {'allowed' if got else 'denied'}, must be "
                    f"{'allowed' if expected else 'denied'}")
    # get-service's ingress rules: every peer must require the worker or admin label.
    for p in policies:
        if selects(p["spec"]["podSelector"], role["get-service"]):
            for rule in p["spec"].get("ingress", []):
                for peer in rule.get("from") or [{}]:
                    if peer.get("podSelector", {}).get("matchLabels", {}).get("tokenvault.io/role") not in ("worker", "admin"):
                        problem("40-network-policies.yaml", f"{p['metadata']['name']}: get-service ingress peer "
                                f"{peer} does not require tokenvault.io/role: worker or admin")
    ok(f"network policies: {len(cases)} connections allowed/denied as intended")


def main() -> int:
    cmd, *args = sys.argv[1:]
    if cmd == "systemd":
        check_systemd(Path(args[0]))
    elif cmd == "docker":
        check_docker(Path(args[0]))
    elif cmd == "context":
        copy_context(Path(args[0]), Path(args[1]))
    elif cmd == "compose":
        check_compose(Path(args[0]))
    elif cmd == "k8s":
        check_k8s(Path(args[0]))
    else:
        print(f"unknown check {cmd}", file=sys.stderr)
        return 2
    for p in PROBLEMS:
        print(f"  FAIL {p}", file=sys.stderr)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
