"""Learning benchmark: held-out task scores of SFT, SFT continued, and SFT + each RL agent and ecosystem trainer.

For every task and seed: ``agents/sft.py`` trains a warm start (a learning-rate schedule,
early stopping on the validation part of the training split, the best checkpoint kept);
``agents/sft.py --init-model`` continues it for as many sequence gradients as PPO spends
(the fair baseline, "SFT continued"); each RL agent (``agents/``) and each ecosystem trainer
(TRL's GRPOTrainer and SB3's PPO, through text_gym's adapters) starts from the same warm
start with the same episodes budget, with the settings ``benchmarks/sweep.py`` chose on
validation data. Every run ends with the same greedy evaluation on the task's held-out
split. The report (``learning_report.py``) gives each row's paired gain over the same seed's
warm start and over its "SFT continued", with a hierarchical paired bootstrap interval.
The table, the JSON, and one plot per task (the agents' training reward per iteration, and
SFT's validation curve) go under ``benchmarks/results/`` and into ``docs/benchmarks.md``;
nothing is edited by hand.

    python benchmarks/learning.py --quick   # CPU: tiny models from scratch (SCAN, easy code, a multi-turn game)
    python benchmarks/learning.py --full    # GPU: SmolLM2-135M on every task
    python benchmarks/learning.py --slice   # GPU: a few minutes of --full (benchmarks/gpu_check.sh)
    python benchmarks/learning.py --smoke   # a minute-long check of the pipeline (writes nothing)
    python benchmarks/learning.py --quick --zero-shot   # add SmolLM2's zero-shot rows on the code suites

Runs go to ``--runs-dir`` (default ``runs/learning_<preset>``); a finished run is not run
again, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from doc_tables import publish
from learning_report import plot, read_metric, summarise, to_markdown

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
RL_AGENTS = ("reinforce", "ppo", "grpo", "nlpo", "q_learning")
ECOSYSTEM = ("trl_grpo", "sb3_ppo")  # TRL's and SB3's trainers through the adapters
METHODS = ("sft", "sft_continued", *RL_AGENTS, *ECOSYSTEM)


@dataclass(frozen=True)
class Task:
    """One column of the benchmark: an env, how its warm start is trained, and what is shown.

    ``env_kwargs`` are the RL agents' and the evaluation's; ``sft_env_kwargs`` (default: the
    same) are the warm start's, so that SFT can see an easier part of a task and leave the
    rest to RL. ``sft_args`` are further ``agents/sft.py`` flags (schedule, validation,
    teacher); ``metrics`` are task metrics shown beside the score; ``methods`` limits the rows."""

    name: str
    env_id: str
    env_kwargs: dict
    sft_updates: int  # warm start (a cap where early stopping is on)
    sft_batch: int
    sft_lr: float
    sft_env_kwargs: dict | None = None
    sft_args: tuple[str, ...] = ()
    continued_args: tuple[str, ...] = ()  # "SFT continued"'s flags after --batch-size (empty: the warm start's)
    teacher: str = ""  # a multi-turn task's scripted strategy that SFT imitates (agents/sft.py --teacher)
    metrics: tuple[str, ...] = ()
    methods: tuple[str, ...] | None = None  # None: every method of the preset
    rl_iterations: int | None = None  # None: the preset's
    agent_args: dict = field(default_factory=dict)  # per agent: flags replacing the preset's


@dataclass(frozen=True)
class Preset:
    name: str
    tasks: tuple[Task, ...]
    seeds: tuple[int, ...]
    model: str  # "tiny" (from scratch) or "smollm2"
    tokenizer: str  # for a tiny model
    hidden: int
    layers: int
    rl_iterations: int
    num_envs: int
    rl_lr: float
    eval_episodes: int
    agent_args: dict = field(default_factory=dict)  # per agent: extra command-line flags
    methods: tuple[str, ...] = METHODS
    device: str = "cpu"
    zero_shot: bool = False  # add the default model's zero-shot rows (benchmarks/zero_shot.py)

    def iterations(self, task: Task) -> int:
        return task.rl_iterations or self.rl_iterations

    def continued_sequences(self, task: Task) -> int:
        """SFT continued gets PPO's sequence gradients: iterations x episodes x 2 epochs."""
        return self.iterations(task) * self.num_envs * 2

    def flags(self, task: Task, agent: str) -> tuple[str, ...]:
        return task.agent_args.get(agent, self.agent_args.get(agent, ()))

    def task_methods(self, task: Task) -> tuple[str, ...]:
        """The rows of ``task``: the teacher's (if it has one), then the preset's methods it runs."""
        own = tuple(m for m in self.methods if task.methods is None or m in task.methods)
        return ("teacher", *own) if task.teacher else own


# warm starts: warm-up, cosine decay to a tenth, validation every 50 updates on the held-back
# tenth of the training split, stop after 4 validations without a gain, keep the best weights
SCHEDULE = ("--lr-schedule", "cosine", "--warmup-updates", "0.05", "--min-lr-ratio", "0.1")
SCHEDULE += ("--val-every", "50", "--val-episodes", "256", "--patience", "4")
# SFT continued: the rate the warm start's schedule ended near, constant, its last weights (as RL keeps)
CONTINUED = ("--learning-rate", "2e-4", "--lr-schedule", "constant", "--warmup-updates", "0", "--val-every", "0")
SCAN = Task(
    "SCAN (simple)",
    "TextTranslate-v0",
    {},
    sft_updates=400,
    sft_batch=64,
    sft_lr=2e-3,
    sft_args=SCHEDULE,
    continued_args=CONTINUED,
)
# the easy problems run in milliseconds: a 1 s limit keeps a sampled infinite loop cheap. SFT
# learns the suite's "sft" part; RL trains on its "rl" part, functions SFT never saw (the
# held-out "test" part computes functions neither saw): docs/envs/code.md's easy suite
CODE = Task(
    "Easy code",
    "TextCode-v0",
    {"dataset": "easy", "split": "rl", "timeout": 1.0},
    sft_updates=300,
    sft_batch=32,
    sft_lr=2e-3,
    sft_env_kwargs={"dataset": "easy", "split": "sft", "timeout": 1.0},
    sft_args=SCHEDULE,
    continued_args=CONTINUED,
    methods=("sft", "sft_continued", *RL_AGENTS, "trl_grpo"),  # SB3's PPO costs 10x: SCAN only
)
# the multi-turn showcase (docs/envs/goal_dialogue.md): SFT imitates a mixture of stepping
# strategies (steps of 2, 3 or 4, one per secret); RL can pick the best step, SFT cannot.
# Every training transcript is needed (no validation part), and a constant rate, as measured
GOAL_SFT = ("--teacher", "step2-4", "--val-fraction", "0", "--val-every", "0", "--lr-schedule", "constant")
GOAL = Task(
    "Guess the number (multi-turn)",
    "TextDialogGoal-v0",
    {"high": 50, "max_turns": 26},
    sft_updates=400,
    sft_batch=32,
    sft_lr=1e-3,
    sft_args=(*GOAL_SFT, "--warmup-updates", "0"),
    continued_args=(*GOAL_SFT, "--learning-rate", "1e-3", "--warmup-updates", "0"),
    teacher="step2-4",
    metrics=("success", "turns"),
    methods=("sft", "sft_continued", "grpo"),
    rl_iterations=25,
    # RL plays every training secret too (the agents' default holds a tenth back for validation)
    agent_args={"grpo": ("--group-size", "16", "--learning-rate", "2e-4", "--val-fraction", "0")},
)
# the settings each agent runs with in the presets: the best of benchmarks/sweep.py's grid
# on the validation part of SCAN's training split (benchmarks/results/sweep_quick.json)
AGENT_ARGS = {
    "reinforce": ("--learning-rate", "3e-5"),
    "ppo": ("--learning-rate", "1e-5"),
    "grpo": ("--learning-rate", "3e-5", "--group-size", "4"),
    "nlpo": ("--learning-rate", "1e-5"),
    "q_learning": ("--learning-rate", "3e-5", "--alpha", "1.0", "--target-update-every", "2"),
    "trl_grpo": ("--learning-rate", "3e-5", "--group-size", "4"),
    "sb3_ppo": ("--learning-rate", "3e-5"),
}
PRESETS = {
    "quick": Preset(
        "quick",
        (SCAN, CODE, GOAL),
        (1, 2, 3),
        "tiny",
        "words",
        128,
        3,
        rl_iterations=40,
        num_envs=64,
        rl_lr=1e-4,
        eval_episodes=256,
        agent_args=AGENT_ARGS,
    ),
    # every task with references to imitate, and the multi-turn game's scripted teacher
    "full": Preset(
        "full",
        (
            replace(SCAN, sft_updates=500, sft_batch=32, sft_lr=5e-5),
            replace(CODE, sft_updates=300, sft_batch=16, sft_lr=5e-5),
            Task("Summarization", "TextSumm-v0", {}, 300, 16, 5e-5),
            Task("Dialogue", "TextDialog-v0", {}, 300, 16, 5e-5),
            replace(GOAL, sft_lr=5e-5, continued_args=(*GOAL_SFT, "--learning-rate", "5e-5", "--warmup-updates", "0")),
        ),
        (1, 2, 3),
        "smollm2",
        "default",
        0,
        0,
        rl_iterations=200,
        num_envs=64,
        rl_lr=1e-5,
        eval_episodes=512,
        agent_args=AGENT_ARGS,
        device="cuda",
        zero_shot=True,
    ),
    # a few minutes of --full on one GPU (benchmarks/gpu_check.sh): SmolLM2 on SCAN, one seed
    "slice": Preset(
        "slice",
        (replace(SCAN, sft_updates=100, sft_batch=32, sft_lr=5e-5),),
        (1,),
        "smollm2",
        "default",
        0,
        0,
        rl_iterations=10,
        num_envs=64,
        rl_lr=1e-5,
        eval_episodes=256,
        agent_args=AGENT_ARGS,
        methods=("sft", "grpo"),
        device="cuda",
    ),
    "smoke": Preset(
        "smoke",
        (replace(SCAN, sft_updates=5, sft_batch=8, sft_args=(*SCHEDULE, "--val-episodes", "8")),),
        (1, 2),
        "tiny",
        "words",
        32,
        1,
        rl_iterations=2,
        num_envs=8,
        rl_lr=1e-4,
        eval_episodes=8,
        agent_args=AGENT_ARGS,
    ),
}


def run(cmd: list[str], log: Path) -> None:
    """Run one agent as its own process (as a user would); its output goes to ``log``."""
    with log.open("w") as out:
        done = subprocess.run([sys.executable, *cmd], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode}); see {log}")


def jobs(preset: Preset, runs: Path) -> tuple[list, list]:
    """(phase 1, phase 2) lists of (method, task, seed, command): the warm starts, then
    what starts from them (SFT continued, each RL agent, each ecosystem trainer)."""
    first, second = [], []
    for task in preset.tasks:
        methods = preset.task_methods(task)
        common = ["--eval-episodes", str(preset.eval_episodes), "--threads", "1", "--device", preset.device]
        common += ["--env-id", task.env_id]
        for seed in preset.seeds:
            base = [*common, "--seed", str(seed), "--runs-dir", str(runs / task.env_id)]
            rl_env = ["--env-kwargs", json.dumps(task.env_kwargs)]
            sft_env = [
                "--env-kwargs",
                json.dumps(task.env_kwargs if task.sft_env_kwargs is None else task.sft_env_kwargs),
            ]
            new_model = ["--model", preset.model, "--tokenizer", preset.tokenizer]
            new_model += ["--hidden", str(preset.hidden), "--layers", str(preset.layers)]
            sft = ["--batch-size", str(task.sft_batch), "--learning-rate", str(task.sft_lr), *task.sft_args]
            first.append(
                (
                    "sft",
                    task,
                    seed,
                    [
                        "agents/sft.py",
                        *base,
                        *sft_env,
                        *new_model,
                        *sft,
                        "--exp-name",
                        "sft",
                        "--total-updates",
                        str(task.sft_updates),
                    ],
                )
            )
            warm = str(runs / task.env_id / f"{task.env_id}__sft__{seed}" / "model")
            if "sft_continued" in methods:
                updates = str(preset.continued_sequences(task) // task.sft_batch)
                cont = ["--batch-size", str(task.sft_batch), *task.continued_args] if task.continued_args else sft
                cmd = ["agents/sft.py", *base, *sft_env, *cont, "--init-model", warm]
                second.append(
                    ("sft_continued", task, seed, [*cmd, "--exp-name", "sft_continued", "--total-updates", updates])
                )
            for agent in (m for m in methods if m in RL_AGENTS or m in ECOSYSTEM):
                rl = ["--init-model", warm, "--exp-name", agent, "--total-iterations", str(preset.iterations(task))]
                rl += ["--num-envs", str(preset.num_envs)]
                flags = preset.flags(task, agent)  # the sweep's choice, its learning rate included
                rl += [] if "--learning-rate" in flags else ["--learning-rate", str(preset.rl_lr)]
                cmd = [f"agents/{agent}.py", *base, *rl_env, *rl, *flags]
                second.append((agent, task, seed, cmd))
    return first, second


def run_dir_of(runs: Path, task: Task, method: str, seed: int) -> Path:
    return runs / task.env_id / f"{task.env_id}__{method}__{seed}"


def run_phase(phase: list, runs: Path, workers: int) -> None:
    """Run ``phase``'s jobs, ``workers`` at a time, skipping those finished before. A job is
    (method, task, seed, command), or the zero-shot job ("zero_shot", None, None, command)."""

    def one(job) -> None:
        method, task, seed, cmd = job
        if task is None:  # the zero-shot rows: one run for the whole benchmark
            run_dir, done = runs / "zero_shot", runs / "zero_shot" / "zero_shot.json"
        else:
            run_dir = run_dir_of(runs, task, method, seed)
            done = run_dir / "eval_rewards.json" if read_metric(run_dir, "charts/eval_return") else None
        if done is not None and done.exists():
            return  # finished in an earlier invocation
        started = time.time()
        run_dir.mkdir(parents=True, exist_ok=True)
        run(cmd, run_dir / "stdout.log")
        score = "" if task is None else f"{read_metric(run_dir, 'charts/eval_return')[-1]:.3f} "
        print(
            f"{task.name if task else '':14s} {method:14s} seed {seed}: {score}({time.time() - started:.0f} s)",
            flush=True,
        )

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, phase))


def score_teacher(preset: Preset, task: Task, runs: Path) -> None:
    """The scripted teacher's own held-out score, played by the task's rules on the samples
    every agent's evaluation scores, written as a run folder for each seed (the teacher is
    deterministic: every seed's folder holds the same scores)."""
    sys.path.insert(0, str(ROOT / "agents"))  # the agents' evaluation chooses the samples
    from common import evenly_spaced

    from text_gym.registration import ENV_TABLE
    from text_gym.tasks import make_task

    env_task = make_task(**{**ENV_TABLE[task.env_id], **task.env_kwargs, "split": "test"})
    samples = evenly_spaced(len(env_task), preset.eval_episodes).tolist()
    rewards, metrics = [], []
    for j in samples:
        sample = env_task.samples[j]
        segments = env_task.demonstration(sample, task.teacher)
        dialogue = env_task.new_dialogue(sample)
        turns = [text for text, agent in segments if agent]
        for turn in turns:
            env_task.user_replies([dialogue], [turn])
        scores = env_task.score(["".join(turns)], [sample], [dialogue])
        rewards.append(float(scores.rewards[0]))
        metrics.append({k: float(v[0]) for k, v in scores.metrics.items()})
    saved = {
        "split": "test",
        "samples": samples,
        "rewards": rewards,
        "metrics": {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]},
    }
    for seed in preset.seeds:
        run_dir = run_dir_of(runs, task, "teacher", seed)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "eval_rewards.json").write_text(json.dumps(saved))
        (run_dir / "metrics.csv").write_text(f"0,charts/eval_return,{np.mean(rewards)}\n")


def zero_shot_job(preset: Preset, runs: Path) -> tuple:
    """The default model's zero-shot rows (benchmarks/zero_shot.py, one thread) as a job."""
    cmd = ["benchmarks/zero_shot.py", "--device", preset.device, "--threads", "1", "--out", str(runs / "zero_shot")]
    return ("zero_shot", None, None, cmd)


def zero_shot_rows(runs: Path) -> list[dict]:
    rows = json.loads((runs / "zero_shot" / "zero_shot.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if k not in ("rewards", "responses")} for r in rows]


def wall_minutes(runs: Path, folders: str = "*/*") -> float:
    """From the first run's start (its TensorBoard file's timestamp) to the last run's end
    (its metrics file's last write), over the run folders ``runs/<folders>``: the benchmark's
    wall time, even across resumed invocations."""
    starts = [int(f.name.split(".")[3]) for f in runs.glob(f"{folders}/events.out.tfevents.*")]
    # the teacher's folders are written by every invocation's summary, not by a run
    ends = [f.stat().st_mtime for f in runs.glob(f"{folders}/metrics.csv") if "__teacher__" not in f.parent.name]
    return (max(ends) - min(starts)) / 60 if starts and ends else 0.0


def budgets(preset: Preset) -> str:
    model = f"{preset.model} model"
    if preset.model == "tiny":
        model += (
            f" (hidden {preset.hidden}, {preset.layers} layers, {preset.tokenizer} tokenizer, trained from scratch)"
        )
    parts = [model]
    for t in preset.tasks:
        rl_flags = {a: " ".join(preset.flags(t, a)) for a in preset.task_methods(t) if preset.flags(t, a)}
        parts.append(
            f"{t.name}: SFT up to {t.sft_updates} updates x {t.sft_batch} at lr {t.sft_lr} ({' '.join(t.sft_args)}); "
            f"SFT continued {preset.continued_sequences(t)} sequences (PPO's 2 epochs over the RL episodes; "
            f"{' '.join(t.continued_args) or 'the warm start flags'}); RL {preset.iterations(t)} iterations x "
            f"{preset.num_envs} episodes at lr {preset.rl_lr} unless set ({rl_flags})"
        )
    parts.append(f"evaluation on up to {preset.eval_episodes} held-out samples")
    return "; ".join(parts[:1]) + ". " + ". ".join(parts[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    for name in PRESETS:
        group.add_argument(f"--{name}", dest="preset", action="store_const", const=name)
    parser.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="runs at once (one CPU thread each)"
    )
    parser.add_argument("--seeds", type=str, default=None, help="comma-separated seeds instead of the preset's")
    parser.add_argument("--device", type=str, default=None, help="torch device instead of the preset's")
    parser.add_argument("--methods", type=str, default=None, help="comma-separated rows instead of the preset's")
    parser.add_argument("--zero-shot", action="store_true", help="add the default model's zero-shot rows")
    parser.add_argument("--runs-dir", type=Path, default=None, help="where the agents' run folders go")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    if args.seeds:
        preset = replace(preset, seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.device:
        preset = replace(preset, device=args.device)
    if args.methods:
        unknown = set(args.methods.split(",")) - set(METHODS)
        if unknown or "sft" not in args.methods.split(","):
            raise SystemExit(f"--methods {args.methods!r}: choose among {list(METHODS)}, sft included (the warm start)")
        preset = replace(preset, methods=tuple(args.methods.split(",")))
    runs = (args.runs_dir or ROOT / "runs" / f"learning_{preset.name}").resolve()

    first, second = jobs(preset, runs)
    with_zero_shot = preset.zero_shot or args.zero_shot
    run_phase([zero_shot_job(preset, runs)] * with_zero_shot + first, runs, args.workers)
    run_phase(second, runs, args.workers)
    for task in preset.tasks:
        if task.teacher:
            score_teacher(preset, task, runs)
    tasks = [
        {"name": t.name, "env_id": t.env_id, "methods": preset.task_methods(t), "metrics": t.metrics}
        for t in preset.tasks
    ]
    rows = summarise(tasks, list(preset.seeds), runs)
    meta = {
        "preset": preset.name,
        "seeds": list(preset.seeds),
        "budgets": budgets(preset),
        "config": asdict(preset),
        "machine": (
            f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
        ),
        "date": time.strftime("%Y-%m-%d"),
        "workers": args.workers,
        "wall_minutes": wall_minutes(runs),
    }
    if with_zero_shot:
        meta["zero_shot"] = zero_shot_rows(runs)
    table = to_markdown(rows, meta)
    print(table)
    if preset.name == "smoke":
        return
    args.out.mkdir(parents=True, exist_ok=True)
    meta["plots"] = plot(rows, args.out, preset.name)
    publish(f"learning_{preset.name}", table, args.out, meta, rows)


if __name__ == "__main__":
    main()
