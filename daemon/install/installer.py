"""Install duskwatch as a systemd service, and remove exactly what was installed.

``duskwatch install-service`` (see :mod:`daemon.cli.install_service`) puts in place, under a
root directory (``/`` on a real box, a temporary directory in tests, like ``DESTDIR``):

- ``/etc/systemd/system/duskwatch.service``: ``deploy/systemd/duskwatch.service`` with
  ``ExecStart=`` pointing at this installation's ``duskwatch`` and ``User=`` set;
- ``/etc/duskwatch/duskwatch.yaml``: the example config with the engine paths filled in (an
  existing config is never overwritten), and ``/etc/duskwatch/credentials/`` for camera
  passwords (``LoadCredential=``);
- ``/var/lib/duskwatch/engines/``: the detector and enhancer built *on this box* by
  ``duskwatch export ...`` subprocesses (TensorRT engines are tied to the GPU and TensorRT
  version they were built with, so they are never copied between boxes).

Everything written is recorded, with its SHA-256, in ``/var/lib/duskwatch/install-manifest.json``
as it is written, so that an interrupted install can still be undone. ``uninstall`` removes the
recorded files that are unchanged, keeps the ones an operator edited (unless ``purge``), and
removes the directories it created once they are empty.

The daemon never imports ``export/``: engines are built by running
``[sys.executable, "-m", "daemon.cli", "export", ...]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

UNIT_NAME = "duskwatch.service"
TEMPLATE_EXEC = "/opt/duskwatch/venv/bin/duskwatch"
MANIFEST_VERSION = 1

# Paths on the target system (joined under the install root).
UNIT_PATH = PurePosixPath("/etc/systemd/system") / UNIT_NAME
CONFIG_DIR = PurePosixPath("/etc/duskwatch")
CONFIG_PATH = CONFIG_DIR / "duskwatch.yaml"
CREDENTIALS_DIR = CONFIG_DIR / "credentials"
STATE_DIR = PurePosixPath("/var/lib/duskwatch")
ENGINES_DIR = STATE_DIR / "engines"
MANIFEST_PATH = STATE_DIR / "install-manifest.json"

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]
Say = Callable[[str], None]


class InstallError(Exception):
    """Installing or uninstalling failed for a reason the operator can fix (named in the text)."""


# -- locating the shipped files ---------------------------------------------------------------
def find_deploy_dir(explicit: str | Path | None = None) -> Path:
    """The ``deploy/`` directory holding the unit template and example config: ``explicit``,
    else the checkout's (run from a clone), else the one the wheel installed under
    ``<prefix>/share/duskwatch/deploy``."""
    candidates = [Path(explicit)] if explicit else [
        Path(__file__).resolve().parents[2] / "deploy",
        Path(sys.prefix) / "share" / "duskwatch" / "deploy",
    ]
    for cand in candidates:
        if (cand / "systemd" / UNIT_NAME).is_file():
            return cand
    where = ", ".join(str(c) for c in candidates)
    raise InstallError(
        f"cannot find systemd/{UNIT_NAME} under {where}; reinstall duskwatch (pip install duskwatch puts "
        "them under <prefix>/share/duskwatch/deploy) or pass --source PATH/TO/duskwatch/deploy"
    )


def find_executable(explicit: str | Path | None = None) -> Path:
    """The installed ``duskwatch`` console script that the unit's ``ExecStart=`` runs."""
    path = Path(explicit) if explicit else Path(sys.executable).parent / "duskwatch"
    if not path.is_absolute():
        raise InstallError(f"--exec {path} must be an absolute path")
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise InstallError(
            f"{path} is not an executable duskwatch; install the package (pip install duskwatch) "
            "into the environment you run install-service from, or pass --exec PATH"
        )
    return path


def executable_warnings(exec_path: Path) -> list[str]:
    """Problems the sandbox will cause for ``exec_path`` (ProtectHome=yes hides /home, /root)."""
    hidden = ("/home", "/root", "/run/user")
    if any(str(exec_path).startswith(h + "/") for h in hidden):
        return [
            f"{exec_path} is under {'/'.join(exec_path.parts[:2])[1:]}, which the unit hides "
            "(ProtectHome=yes): the service will fail with status 203/EXEC. Install duskwatch "
            "under /opt (python3 -m venv /opt/duskwatch/venv && /opt/duskwatch/venv/bin/pip "
            "install duskwatch) and run install-service from there"
        ]
    return []


def choose_engines(python: str = sys.executable, runner: Runner | None = None):
    """This box's fastest engine kinds (:mod:`daemon.install.engine_choice`), probed in
    ``python``, the interpreter the service will run."""
    from daemon.install.engine_choice import choose_engines as choose, probe_box_in

    return choose(probe_box_in(python, runner))


# -- rendering --------------------------------------------------------------------------------
def render_unit(template: str, exec_path: Path | str, user: str, guide: Path | None = None) -> str:
    """The unit with ``ExecStart=``/``ExecReload=`` running ``exec_path`` as ``user``, and
    ``Documentation=`` pointing at ``guide`` (the operator's guide) when given."""
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,30}", user):
        raise InstallError(f"--user '{user}' is not a valid user name ([a-z_][a-z0-9_-]*)")
    if TEMPLATE_EXEC not in template:
        raise InstallError(f"the unit template no longer contains {TEMPLATE_EXEC}; cannot render it")
    text = template.replace(TEMPLATE_EXEC, str(exec_path))
    text, n_user = re.subn(r"(?m)^User=.*$", f"User={user}", text)
    text, n_group = re.subn(r"(?m)^Group=.*$", f"Group={user}", text)
    if n_user != 1 or n_group != 1:
        raise InstallError("the unit template must have exactly one User= and one Group= line")
    if guide is not None:
        text = re.sub(r"(?m)^Documentation=.*$", f"Documentation=file://{Path(guide).resolve()}", text)
    return text


def render_config(example: str, detector: PurePosixPath, enhancer: PurePosixPath | None) -> str:
    """The example config with ``engines.detector``/``engines.enhancer`` set to the built files.

    Edits the text (keeping its comments) and checks the result parses to those paths.
    """
    import yaml

    text = _set_engine_key(example, "detector", str(detector))
    text = _set_engine_key(text, "enhancer", None if enhancer is None else str(enhancer))
    engines = (yaml.safe_load(text) or {}).get("engines") or {}
    if engines.get("detector") != str(detector) or engines.get("enhancer") != (
        None if enhancer is None else str(enhancer)
    ):
        raise InstallError("could not set the engine paths in the example config's engines: section")
    return text


def _set_engine_key(text: str, key: str, value: str | None) -> str:
    """Replace ``key:`` inside the top-level ``engines:`` block (or add it there); ``None``
    comments the key out (no enhancer built: frames are never enhanced)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(r"engines:\s*(#.*)?$", ln)), None)
    if start is None:
        raise InstallError("the example config has no top-level 'engines:' section")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\S", lines[i])), len(lines))
    pattern = re.compile(rf"^(\s+){key}:\s*[^#\n]*?(\s*#.*)?$")
    for i in range(start + 1, end):
        m = pattern.match(lines[i].rstrip("\n"))
        if m and value is None:
            lines[i] = f"{m.group(1)}# {key}: none built (install-service --no-enhancer)\n"
            return "".join(lines)
        if m:
            lines[i] = f"{m.group(1)}{key}: {value}{m.group(2) or ''}\n"
            return "".join(lines)
    if value is not None:
        lines.insert(start + 1, f"  {key}: {value}\n")
    return "".join(lines)


# -- engines ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineSpec:
    """One engine to build: its role, target path and the export command line."""

    role: str  # detector | enhancer
    path: PurePosixPath  # on the target system
    argv: tuple[str, ...]


def engine_specs(
    fmt: str,
    weights: str = "yolo11n.pt",
    imgsz: int = 640,
    max_batch: int = 8,
    denoiser_checkpoint: str | None = None,
    steps: int = 2,
    enhancer: bool = True,
    python: str = sys.executable,
    engines_dir: Path | None = None,
    enhancer_fmt: str | None = None,
) -> list[EngineSpec]:
    """The ``duskwatch export`` commands that build this box's engines into ``engines_dir``:
    the detector as ``fmt`` (``export yolo --format``), the enhancer as ``enhancer_fmt``
    (``export denoiser --format``; default: the one that goes with ``fmt``)."""
    from daemon.install.engine_choice import DETECTOR_SUFFIX, ENHANCER_FOR, ENHANCER_SUFFIX

    if fmt not in DETECTOR_SUFFIX:
        raise InstallError(f"--format {fmt}: use one of {', '.join(DETECTOR_SUFFIX)} (or auto)")
    enhancer_fmt = enhancer_fmt or ENHANCER_FOR[fmt]
    if enhancer_fmt not in ENHANCER_SUFFIX:
        raise InstallError(f"enhancer format {enhancer_fmt}: use one of {', '.join(ENHANCER_SUFFIX)}")
    base = [python, "-m", "daemon.cli", "export"]
    out_dir = engines_dir or Path(str(ENGINES_DIR))
    stem = Path(weights).stem or "detector"
    det = PurePosixPath(ENGINES_DIR / f"{stem}{DETECTOR_SUFFIX[fmt]}")
    det_argv = [*base, "yolo", "--weights", weights, "--imgsz", str(imgsz), "--format", fmt,
                "--dynamic", "--batch", str(max_batch), "--out", str(out_dir / det.name)]
    if fmt == "engine":
        det_argv.append("--half")
    specs = [EngineSpec("detector", det, tuple(det_argv))]
    if enhancer:
        enh = PurePosixPath(ENGINES_DIR / f"denoiser{ENHANCER_SUFFIX[enhancer_fmt]}")
        enh_argv = [*base, "denoiser", "--steps", str(steps), "--format", enhancer_fmt,
                    "--out", str(out_dir / enh.name)]
        if denoiser_checkpoint:
            enh_argv[5:5] = ["--checkpoint", denoiser_checkpoint]
        specs.append(EngineSpec("enhancer", enh, tuple(enh_argv)))
    return specs


# -- the manifest -----------------------------------------------------------------------------
@dataclass
class Manifest:
    """What an install wrote: files (target path -> sha256) and the directories it created."""

    root: Path
    files: dict[str, str] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return under(self.root, MANIFEST_PATH)

    @classmethod
    def load(cls, root: Path) -> "Manifest | None":
        path = under(root, MANIFEST_PATH)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(root, dict(data["files"]), list(data["dirs"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InstallError(f"{path}: unreadable install manifest ({exc}); remove files by hand") from None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": MANIFEST_VERSION, "files": self.files, "dirs": self.dirs}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)

    def owns_unchanged(self, target: PurePosixPath) -> bool:
        """True when ``target`` was written by an install and has not been edited since."""
        digest = self.files.get(str(target))
        return digest is not None and sha256_of(under(self.root, target)) == digest


def under(root: Path, target: PurePosixPath | str) -> Path:
    """``target`` (absolute on the target system) placed under ``root``."""
    return Path(root) / str(target).lstrip("/")


def sha256_of(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


# -- installing -------------------------------------------------------------------------------
@dataclass
class InstallPlan:
    """Everything ``install`` needs; built by the command from its flags."""

    root: Path
    unit_text: str
    example_config: str
    specs: list[EngineSpec]
    build: bool = True
    force: bool = False


class Installer:
    """Writes files under ``root`` and records each one in the manifest as it goes."""

    def __init__(self, root: Path, runner: Runner | None = None, say: Say = print):
        self.root = Path(root)
        self.run = runner or _run
        self.say = say
        self.manifest = Manifest.load(self.root) or Manifest(self.root)

    # one step per kind of thing written
    def install(self, plan: InstallPlan) -> list[str]:
        """Install per ``plan``; returns warnings. Raises :class:`InstallError` on failure."""
        warnings: list[str] = []
        self.make_dir(STATE_DIR)
        self.manifest.save()  # first, so that even a failed install can be uninstalled
        self.write_file(UNIT_PATH, plan.unit_text, mode=0o644, replace=plan.force)
        self.make_dir(CREDENTIALS_DIR, mode=0o700)
        detector = next(s.path for s in plan.specs if s.role == "detector")
        enhancer = next((s.path for s in plan.specs if s.role == "enhancer"), None)
        config = render_config(plan.example_config, detector, enhancer)
        if not self.write_config(config):
            example = CONFIG_DIR / "duskwatch.yaml.example"
            warnings.append(f"kept the existing {CONFIG_PATH}; the new example is {example}")
            self.write_file(example, config, mode=0o644, replace=True)
        self.make_dir(ENGINES_DIR)
        if plan.build:
            for spec in plan.specs:
                self.build_engine(spec, force=plan.force)
        else:
            missing = [s for s in plan.specs if not under(self.root, s.path).exists()]
            warnings += [f"--no-build: the {s.role} {s.path} is not built; build it with:\n    "
                         + " ".join(s.argv) for s in missing]
        return warnings

    def make_dir(self, target: PurePosixPath, mode: int = 0o755) -> None:
        """Create ``target`` and any missing parents, recording those it created."""
        missing = []
        path = PurePosixPath(target)
        while not under(self.root, path).exists():
            missing.append(path)
            path = path.parent
        for p in reversed(missing):
            under(self.root, p).mkdir(mode=mode if p == target else 0o755)
            if str(p) not in self.manifest.dirs:
                self.manifest.dirs.append(str(p))
            self.say(f"created {p}/")
        if missing and under(self.root, MANIFEST_PATH).parent.exists():
            self.manifest.save()

    def write_file(self, target: PurePosixPath, text: str, mode: int, replace: bool) -> None:
        """Write ``target`` unless someone else's file is there (then only with ``replace``)."""
        path = under(self.root, target)
        if path.exists() and not replace and not self.manifest.owns_unchanged(target):
            raise InstallError(
                f"{target} exists and was not written by install-service (or was edited since); "
                "move it away or pass --force to replace it"
            )
        self.make_dir(target.parent)
        tmp = path.with_name(path.name + ".duskwatch-tmp")
        tmp.write_text(text)
        os.chmod(tmp, mode)
        tmp.replace(path)
        self.record(target)
        self.say(f"wrote {target}")

    def write_config(self, text: str) -> bool:
        """Write the config unless the operator already has one; False when it was kept."""
        path = under(self.root, CONFIG_PATH)
        if path.exists() and not self.manifest.owns_unchanged(CONFIG_PATH):
            return False
        self.write_file(CONFIG_PATH, text, mode=0o644, replace=True)  # the service user reads it
        return True

    def build_engine(self, spec: EngineSpec, force: bool) -> None:
        """Run the export subprocess and record every file it left in the engines directory."""
        out = under(self.root, spec.path)
        if out.exists() and not force and not self.manifest.owns_unchanged(spec.path):
            raise InstallError(
                f"{spec.path} exists and was not built by install-service; pass --force to rebuild it"
            )
        engines = under(self.root, ENGINES_DIR)
        before = _snapshot(engines)
        self.say(f"building the {spec.role}: {' '.join(spec.argv)}")
        res = self.run(list(spec.argv))
        for name in sorted(set(_snapshot(engines).items()) - set(before.items())):
            self.record(ENGINES_DIR / name[0])
        if res.returncode != 0 or not out.is_file():
            why = f"exit status {res.returncode}" if res.returncode else f"{spec.path} was not written"
            tail = "\n".join((res.stderr or "").strip().splitlines()[-15:])
            raise InstallError(
                f"building the {spec.role} failed ({why}){': ' + chr(10) + tail if tail else ' (output above)'}\n"
                f"rerun it by hand: {' '.join(spec.argv)}\n"
                "or install without the enhancer (--no-enhancer) or without engines (--no-build)"
            )
        self.say(f"built {spec.path} ({out.stat().st_size / 1e6:.1f} MB)")

    def record(self, target: PurePosixPath) -> None:
        digest = sha256_of(under(self.root, target))
        if digest is not None:
            self.manifest.files[str(target)] = digest
            self.manifest.save()


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) of the regular files directly in ``directory``."""
    if not directory.is_dir():
        return {}
    out = {}
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            out[entry.name] = (st.st_size, st.st_mtime_ns)
    return out


# -- uninstalling -----------------------------------------------------------------------------
@dataclass
class UninstallReport:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # edited since install, or a non-empty directory


def uninstall(root: Path, purge: bool = False, say: Say = print) -> UninstallReport:
    """Remove what the manifest lists: unchanged files (all files with ``purge``), then the
    directories the install created, deepest first, when empty."""
    manifest = Manifest.load(Path(root))
    if manifest is None:
        raise InstallError(
            f"no install manifest at {MANIFEST_PATH} under {root}: nothing recorded to uninstall"
        )
    report = UninstallReport()
    for target in sorted(manifest.files):
        _remove_file(manifest, PurePosixPath(target), purge, report, say)
    _remove_derived(manifest, report, say)
    if report.kept:  # keep the record of what is left, so that --purge can finish the job
        manifest.files = {t: d for t, d in manifest.files.items() if t in report.kept}
        manifest.save()
        say(f"kept {MANIFEST_PATH} listing what is left; `--uninstall --purge` removes it all")
    else:
        _remove_file_plain(manifest.path, str(MANIFEST_PATH), report, say)
    for target in sorted(manifest.dirs, key=lambda d: d.count("/"), reverse=True):
        _remove_dir(Path(root), target, report, say)
    return report


def _remove_file(manifest: Manifest, target: PurePosixPath, purge: bool,
                 report: UninstallReport, say: Say) -> None:
    path = under(manifest.root, target)
    if not path.exists() and not path.is_symlink():
        return
    if not purge and not manifest.owns_unchanged(target):
        report.kept.append(str(target))
        say(f"kept {target} (changed since install; remove it yourself, or pass --purge)")
        return
    _remove_file_plain(path, str(target), report, say)


def _remove_derived(manifest: Manifest, report: UninstallReport, say: Say) -> None:
    """What the daemon made from an installed detector IR that uninstall removed (its int8
    sibling and calibration frames, ``daemon.int8.sibling``) goes with it: nothing the operator
    wrote, and useless without the IR it was made from."""
    from daemon.int8.sibling import Sibling

    installed = {under(manifest.root, t) for t in manifest.files}
    for target in manifest.files:
        if not target.endswith(".xml") or target not in report.removed:
            continue
        for path in Sibling(under(manifest.root, target)).derived():
            if path in installed:
                continue  # install-service built it (--calib-dir): the manifest decided
            shown = "/" + str(path.relative_to(manifest.root)) + ("/" if path.is_dir() else "")
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            report.removed.append(shown)
            say(f"removed {shown} (made by the daemon from {target})")


def _remove_file_plain(path: Path, shown: str, report: UninstallReport, say: Say) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    report.removed.append(shown)
    say(f"removed {shown}")


def _remove_dir(root: Path, target: str, report: UninstallReport, say: Say) -> None:
    """rmdir ``target`` if empty. With DynamicUser=, systemd moves /var/lib/duskwatch to
    /var/lib/private/duskwatch and leaves a symlink: both are removed when the target is empty."""
    path = under(root, target)
    real = path.resolve() if path.is_symlink() else path
    if not real.is_dir():
        return
    if any(real.iterdir()):
        report.kept.append(target + "/")
        say(f"kept {target}/ (not empty: {', '.join(sorted(p.name for p in real.iterdir())[:5])})")
        return
    real.rmdir()
    if path.is_symlink():
        path.unlink()
    report.removed.append(target + "/")
    say(f"removed {target}/")


# -- what to type next ------------------------------------------------------------------------
def next_steps(root: Path, exe: Path | str, built: bool, fmt: str) -> str:
    """The commands an operator runs after install (printed by the command)."""
    prefix = "" if str(root) == "/" else f"(files were staged under {root}; copy them to / first)\n"
    build = "" if built else (
        "  # build the engines on this box (TensorRT plans only run where they were built):\n"
        f"  sudo {exe} install-service --format {fmt}\n")
    return prefix + (
        "next steps:\n"
        f"{build}"
        f"  sudoedit {CONFIG_PATH}    # list your cameras\n"
        f"  sudo sh -c 'umask 077; printf %s PASSWORD > {CREDENTIALS_DIR}/gate'"
        "    # then password_credential: camera_gate\n"
        f"  sudo {exe} check-config {CONFIG_PATH}\n"
        "  sudo systemctl daemon-reload\n"
        f"  sudo systemctl enable --now {UNIT_NAME}\n"
        f"  systemctl status {UNIT_NAME}; journalctl -u duskwatch -f\n"
        "  curl -s localhost:9872/readyz; curl -s localhost:9872/cameras\n"
        f"  sudo systemctl reload {UNIT_NAME}           # after editing the config\n"
        "Prometheus: deploy/prometheus/ (scrape job + alert rules); Grafana: deploy/grafana/duskwatch.json\n"
    )


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess:
    """Run a command with its output going to the terminal (exports print progress)."""
    return subprocess.run(list(argv), text=True)


def _quiet(argv: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True)
