"""A canary release with real parts: a stable and a canary server process, scraped by Debian's Prometheus with the
labels the chart's PodMonitor gives their pods, load sent to both, and `predictors canary-analysis` deciding.

One scenario per model name (both servers serve all of them; the canary's copy is the scenario's version):

- ``image-classification``: the canary is the stable version (promote);
- ``failing``: a fifth of the canary's items fail (500 INTERNAL_ERROR): roll back;
- ``slow``: every canary forward pass takes a second longer: roll back;
- ``shifted``: the canary runs other weights (another seed, a bias towards one class): its answers shift: roll back;
- ``quiet``: healthy, but the canary gets a tenth of stable's traffic, too little to judge: undecided.

Every model is `FaultyClassifier` (tests/support/faulty_predictors.py: the demo classifier with faults a version
can have) so that only the scenario differs. Used by tests/integration/test_canary_analysis.py (one round) and
`python -m bench canary` (repeated rounds: decision time and false-decision rate).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from devtools.images import sample_image
from devtools.redis_server import RedisServer, run_redis
from tests.support import faults
from tests.support.prometheus import PrometheusServer, monitor_labels, run_prometheus
from tests.support.server import ServerProcess, start_server

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vision-predictors"
#: what the chart is rendered as: its PodMonitor and pod labels name the scraped series
RELEASE, NAMESPACE, MODEL_KEY = "vp", "models", "image-classification"


@dataclass(frozen=True)
class Scenario:
    model: str
    expected: str  # promote | rollback | undecided
    what: str
    #: FaultyClassifier options of the canary's copy
    options: dict[str, Any] = field(default_factory=dict)
    #: the canary's weights: (seed, first class bias) of the demo writer, or None for stable's
    weights: tuple[int, float] | None = None
    #: the canary's request rate relative to stable's
    canary_share: float = 1.0


SCENARIOS = (
    Scenario("image-classification", "promote", "the canary is the stable version"),
    Scenario("failing", "rollback", "a fifth of the canary's items fail (500)", {"failing_share": 0.2}),
    Scenario("slow", "rollback", "every canary forward pass takes 1 s longer", {"forward_delay_seconds": 1.0}),
    Scenario("shifted", "rollback", "the canary runs other weights (another seed, a bias towards one class: "
             "top-1 scores ~0.7 instead of ~0.1)", weights=(1, 3.0)),
    Scenario("quiet", "undecided", "healthy, but a tenth of stable's traffic", canary_share=0.1),
)
EXIT_CODES = {"promote": 0, "rollback": 1, "undecided": 2}

#: the thresholds the scenarios are judged with (a chart values file's canaryAnalysis block): fewer requests
#: than production's default (a minute of test load), and latency margins no scheduling hiccup of a shared
#: 2-core machine reaches (the slow canary is 1 s slower per forward pass)
CANARY_ANALYSIS_VALUES = {
    "canaryAnalysis": {
        "minRequests": 60,
        "minResults": 60,
        "latencyP99MaxRatio": 2.0,
        "latencyP99MinIncreaseSeconds": 0.5,
    }
}
#: the image-classification model's forward pass on a FORWARD_SLOW image: long enough to read a queue
SLOW_FORWARD_SECONDS = 12.0


def render_chart(*sets: str) -> list[dict[str, Any]]:
    """`helm template` of the chart (the real Helm 4, installed by ci/install-helm.sh) as release `RELEASE` in
    `NAMESPACE` with these --set values."""
    tools = subprocess.run([str(REPO / "ci" / "install-helm.sh")], capture_output=True, text=True, check=True,
                           timeout=900).stdout
    helm = dict(line.split("=", 1) for line in tools.split() if "=" in line)["HELM4"]
    command = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for item in sets:
        command += ["--set", item]
    rendered = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def chart_monitor() -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The chart's PodMonitor and the pod labels of a model's stable and canary predictor (KServe Standard mode
    with a canary): the test's scrape labels are the chart's."""
    docs = render_chart(f"models.{MODEL_KEY}.predictor=image-classification",
                        f"models.{MODEL_KEY}.weights.storageUri=pvc://weights/{MODEL_KEY}",
                        f"models.{MODEL_KEY}.canary.enabled=true", "kserve.gatewayApi.enabled=true",
                        "metrics.serviceMonitor.enabled=true")
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    (isvc,) = [d for d in docs if d["kind"] == "InferenceService"]
    return monitor, isvc["spec"]["predictor"]["labels"], isvc["spec"]["canary"][0]["predictor"]["labels"]


def write_repositories(demo_classifier: Path, root: Path) -> tuple[Path, Path]:
    """Model repositories of the stable and the canary server: one model per scenario."""
    repositories = (root / "stable", root / "canary")
    for scenario in SCENARIOS:
        for track, repository in zip(("stable", "canary"), repositories, strict=True):
            directory = repository / scenario.model
            options: dict[str, Any] = dict(scenario.options) if track == "canary" else {}
            if scenario.model == "image-classification":
                options["slow_forward_seconds"] = SLOW_FORWARD_SECONDS
            if track == "canary" and scenario.weights is not None:
                seed, bias = scenario.weights
                subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                "from predictors.models.image_classification import demo as m; "
                                "m.write(Path(sys.argv[1]), seed=int(sys.argv[2]), "
                                "first_class_bias=float(sys.argv[3]))",
                                str(directory), str(seed), str(bias)], check=True, cwd=REPO, timeout=600)
            else:
                shutil.copytree(demo_classifier, directory)
            (directory / "predictor.json").write_text(json.dumps(
                {"predictor": faults.FAULTY_PREDICTOR, "demo_weights": True, "options": options}))
    return repositories


@dataclass
class CanaryWorld:
    stable: ServerProcess
    canary: ServerProcess
    prometheus: PrometheusServer
    redis: RedisServer | None
    directory: Path
    values_file: Path

    @property
    def servers(self) -> dict[str, ServerProcess]:
        return {"stable": self.stable, "canary": self.canary}


def _start(name: str, repository: Path, log_dir: Path, extra: Sequence[str]) -> ServerProcess:
    # one torch thread each: two servers of five models share two cores with the load and Prometheus
    return start_server(["--model-repository", str(repository), "--max-batch-size", "8", "--max-latency-ms", "5",
                         "--no-access-log", *extra], log_dir / f"{name}.log",
                        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


#: a model stable serves besides the scenarios' with `with_face`: what the face-enhancement signals come from
FACE_MODEL = "face-enhancement"


@contextlib.contextmanager
def canary_world(demo_classifier: Path, directory: Path, with_redis: bool = True, with_face: bool = False,
                 rule_files: Sequence[Path] = ()) -> Iterator[CanaryWorld]:
    """Both servers (stable with asynchronous jobs on a real Redis when `with_redis`, and the demo face-enhancement
    model when `with_face`) and Prometheus scraping them every second, labelled as the chart's PodMonitor labels
    the stable and the canary pods."""
    monitor, stable_labels, canary_labels = chart_monitor()
    stable_repo, canary_repo = write_repositories(demo_classifier, directory / "repositories")
    if with_face:
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from predictors.models.face_enhancement import demo; demo.write(Path(sys.argv[1]))",
                        str(stable_repo / FACE_MODEL)], check=True, cwd=REPO, timeout=600)
    values_file = directory / "canary-values.yaml"
    values_file.write_text(yaml.safe_dump(CANARY_ANALYSIS_VALUES))
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(run_redis(directory / "redis")) if with_redis else None
        stable = _start("stable", stable_repo, directory, ["--jobs-redis-url", redis.url] if redis else [])
        stack.callback(stable.stop)
        canary = _start("canary", canary_repo, directory, [])
        stack.callback(canary.stop)
        models = [scenario.model for scenario in SCENARIOS]
        stable.wait_ready(models + ([FACE_MODEL] if with_face else []), timeout=900)
        canary.wait_ready(models, timeout=900)
        scrape_configs = []
        for track, server, pod_labels in (("stable", stable, stable_labels), ("canary", canary, canary_labels)):
            pod = f"{RELEASE}-{MODEL_KEY}-{'canary-' if track == 'canary' else ''}predictor-5d8f7-{track[:5]}"
            scrape_configs.append({
                "job_name": track, "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{server.http_port}"],
                                    "labels": monitor_labels(monitor, pod_labels, NAMESPACE, pod)}],
            })
        prometheus = stack.enter_context(run_prometheus(directory / "prometheus", scrape_configs,
                                                        rule_files=rule_files))
        prometheus.wait_for_scrapes(2)
        yield CanaryWorld(stable, canary, prometheus, redis, directory, values_file)


# ---- load ------------------------------------------------------------------------------------------------


def image_pool(count: int = 40) -> list[str]:
    """Distinct pictures (base64 JPEG), the same pool for both tracks."""
    pictures = []
    for seed in range(100, 100 + count):
        buffer = io.BytesIO()
        sample_image(seed, (faults.HEALTHY_WIDTH, 96)).save(buffer, format="JPEG")
        pictures.append(base64.b64encode(buffer.getvalue()).decode())
    return pictures


async def _track_load(client: httpx.AsyncClient, url: str, model: str, rate: float, seconds: float,
                      images: list[str], rng: random.Random, codes: Counter[int]) -> None:
    """Requests at `rate` per second (Poisson arrivals, not waiting for answers) for `seconds`."""
    pending: set[asyncio.Task[None]] = set()

    async def one(image: str) -> None:
        try:
            response = await client.post(f"{url}/v1/models/{model}:predict",
                                         json={"instances": [{"image": {"b64": image}}]}, timeout=60)
            codes[response.status_code] += 1
        except httpx.HTTPError:
            codes[0] += 1

    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        await asyncio.sleep(rng.expovariate(rate))
        if loop.time() >= end:
            break
        task = asyncio.create_task(one(rng.choice(images)))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def _load(world: CanaryWorld, scenarios: Sequence[Scenario], rate: float, seconds: float, seed: int,
                images: list[str]) -> dict[str, dict[str, dict[int, int]]]:
    rng = random.Random(seed)
    codes: dict[str, dict[str, Counter[int]]] = {s.model: {"stable": Counter(), "canary": Counter()}
                                                 for s in scenarios}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        tasks = []
        for scenario in scenarios:
            for track, server in world.servers.items():
                track_rate = rate * (scenario.canary_share if track == "canary" else 1.0)
                tasks.append(_track_load(client, server.url, scenario.model, track_rate, seconds, images,
                                         random.Random(rng.random()), codes[scenario.model][track]))
        await asyncio.gather(*tasks)
    return {model: {track: dict(counter) for track, counter in tracks.items()} for model, tracks in codes.items()}


def send_load(world: CanaryWorld, rate: float, seconds: float, seed: int = 0,
              scenarios: Sequence[Scenario] = SCENARIOS) -> dict[str, dict[str, dict[int, int]]]:
    """Load on every scenario's model of both servers; the HTTP status counts per model and track."""
    return asyncio.run(_load(world, scenarios, rate, seconds, seed, image_pool()))


# ---- the decision ------------------------------------------------------------------------------------------


def analysis_command(prometheus_url: str, model: str, values_file: Path, *extra: str) -> list[str]:
    """`predictors canary-analysis` as a user runs it, for this release's series."""
    return [sys.executable, "-m", "predictors", "canary-analysis", "--prometheus", prometheus_url, "--model", model,
            "--selector", f'namespace="{NAMESPACE}",app_kubernetes_io_instance="{RELEASE}"',
            "--values", str(values_file), *extra]


def analyse(world: CanaryWorld, model: str, window_seconds: int, at: float | None = None,
            out_dir: Path | None = None) -> tuple[int, dict[str, Any], str]:
    """Run the command (a child process); its exit code, JSON report and printed report."""
    out_dir = out_dir or world.directory / "reports"
    json_path = out_dir / f"{model}.json"
    extra = ["--window", f"{window_seconds}s", "--json", str(json_path), "--markdown", str(out_dir / f"{model}.md")]
    if at is not None:
        extra += ["--at", f"{at:.3f}"]
    result = subprocess.run(analysis_command(world.prometheus.url, model, world.values_file, *extra),
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    report = json.loads(json_path.read_text()) if json_path.exists() and result.returncode in (0, 1, 2) else {}
    return result.returncode, report, result.stdout + result.stderr


def wait_for_fresh_scrapes(world: CanaryWorld, count: int = 2) -> float:
    """After the load: until both servers have been scraped `count` more times; the instant to analyse at."""
    world.prometheus.wait_for_scrapes(count)
    return time.time()
