"""hfssl word2vec against gensim, side by side, on the identical token stream and hyperparameters.

    python scripts/bench_word2vec.py --repeats 2     # the full table: both architectures (~6 min on 2 cores)
    python scripts/bench_word2vec.py --quick         # skip-gram only, 1 epoch, a quarter of the corpus
    python scripts/bench_word2vec.py --output bench.json --markdown bench.md
    python scripts/bench_word2vec.py --whole-process --repeats 3    # the commands users run, end to end (~5 min)
    python scripts/bench_word2vec.py --whole-process --quick --architectures cbow --repeats 1  # a check that it runs

Corpus: ``builtin:english_corpus`` (~2.17M words), split into words by hfssl's tokenizer rules
(lower case, ``[\\w']+``) once; documents longer than 10,000 words are cut into pieces, because
gensim silently truncates longer sentences. gensim trains on these word lists; hfssl trains through
its real engine (``hfssl.training.trainer.train``, the code behind ``hfssl train``) on the same
pieces, stored as a local ``datasets`` folder of space-joined words, which its tokenizer splits back
into exactly the same words.

Hyperparameters, both: 100-d vectors, window 5, 5 negatives, min_count 5, sample 1e-3, 5 epochs,
learning rate 0.025 decaying linearly to 0.0001, 2 threads (gensim ``workers=2``; hfssl
``model.workers=2``, the numba kernel's threads; ``--kernel torch`` measures the batched-tile
kernel instead, with two block worker threads and one intra-op thread).

Measured per run, each in a fresh subprocess, gensim and hfssl alternating:

* words/s = raw corpus words (every token, also those under min_count) x epochs / training time,
  gensim's own definition of its "words/s" without the effective-word discount. Training time:
  gensim, ``Word2Vec.train``; hfssl, from the first training batch to the start of the end-of-run
  hook (it includes the engine's per-step work, the SGD step and the final checkpoint). Vocabulary
  building and encoding are timed separately ("prep"); ``datasets`` caches both next to the corpus
  folder, so only hfssl's first run (the skip-gram cold row) pays them, as a user's first run on a
  corpus does (gensim counts again every run).
* whole process: wall seconds from the parent starting the child interpreter to the trained vectors
  saved (imports, reading the corpus, vocabulary, training, saving; not the evaluation), and the
  child's CPU seconds up to that point. gensim saves its ``KeyedVectors``; hfssl's engine saves the
  model, tokenizer and counts. hfssl's numba kernel is compiled on the first run into a fresh cache
  (``NUMBA_CACHE_DIR`` in the temporary folder: the "cold" row, what the first run after an install
  costs) and loaded from it by every later run.
* peak RSS of the process (``VmHWM``) and its growth during vocabulary + training.
* WordSim-353 and SimLex-999 Spearman, Google analogies 3CosAdd accuracy over the 30,000 most
  frequent words: the same code (``hfssl.evaluation.word_vectors``) on both sets of vectors.

``--whole-process`` compares instead the two commands a user runs, each a whole process from the shell's
point of view, on the same corpus file (one piece per line, the words joined by spaces):
``hfssl train recipes/word2vec/english_corpus[_cbow].yaml data.source=FILE eval.protocols=[]
model.workers=N`` (``python -m hfssl.cli``: this checkout; training, export, pictures and model card) and
gensim's own command line, ``python -m gensim.scripts.word2vec_standalone -train FILE -output OUT.txt``
with the same settings (``-cbow 1/0 -size 100 -window 5 -negative 5 -min_count 5 -sample 1e-3 -iter 5
-alpha 0.025 -threads N -binary 0``: it reads the file as ``LineSentence``, trains and writes the text
vectors). Per architecture: one first run of each side (hfssl's first run on a new file fills the
``datasets`` cache of the file and its vocabulary counts, and compiles numba's kernels if this checkout
has not yet; reported, left out of the medians), then ``--repeats`` alternating pairs. Per run: wall
seconds from spawn to exit, the child's CPU seconds (user + system, ``os.wait4``), its peak RSS, the
1-minute load average before it; for hfssl also the phases read from its log's timestamps (start to
vocabulary, to the kernels ready, to the first and the last checkpoint, export, pictures + card, exit).
The ``datasets`` cache of the children is a folder of the temporary directory (removed at the end).
After the runs, the WS-353 / SimLex-999 Spearman of the vectors each side wrote last are printed: both
commands must have trained comparable models. The CPU's model and vector extensions (AVX2, AVX-512, AMX)
are printed first and head the table; the hfssl target of issue 28 is >= 1x gensim for CBOW, >= 2x for
skip-gram, whole process.

For the lead, on a quiet machine (nothing else running; ~5 minutes on 2 AVX2 cores, less on AVX-512):

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 /path/to/.venv/bin/python scripts/bench_word2vec.py \
        --whole-process --repeats 3 --threads 2 --output w2v_whole.json --markdown w2v_whole.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmark this checkout's hfssl, whatever is installed
MAX_PIECE = 10_000  # gensim's MAX_WORDS_IN_BATCH: longer sentences are truncated by gensim
HYPER = {"vector_size": 100, "window": 5, "negative": 5, "min_count": 5, "sample": 1e-3, "epochs": 5}


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM). ``getrusage``'s ru_maxrss would include the parent's peak,
    which Linux carries over ``fork`` + ``exec``."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_corpus(directory: Path, fraction: float) -> dict:
    """Split the corpus into words once; write the word lists (gensim) and a datasets folder (hfssl)."""
    import pickle

    import datasets

    from hfssl.data.text_corpus import load_english_corpus
    from hfssl.data.text import word_pre_tokenizer

    corpus = load_english_corpus()
    if fraction < 1.0:
        corpus = corpus.select(range(0, len(corpus), round(1 / fraction)))
    normalizer, splitter = word_pre_tokenizer(True, r"[\w']+")
    pieces = []
    for text in corpus["text"]:
        words = [word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))]
        pieces.extend(words[start : start + MAX_PIECE] for start in range(0, len(words), MAX_PIECE))
    pieces = [piece for piece in pieces if piece]
    with open(directory / "pieces.pkl", "wb") as handle:
        pickle.dump(pieces, handle)
    datasets.Dataset.from_dict({"text": [" ".join(piece) for piece in pieces]}).save_to_disk(str(directory / "text"))
    return {"documents": len(pieces), "raw_words": sum(len(piece) for piece in pieces)}


def _evaluate(vectors) -> dict:  # noqa: ANN001 - WordVectors
    from hfssl.evaluation.word_vectors import ANALOGY_SET, data_file, evaluate_analogies, evaluate_word_similarity

    return {
        "wordsim353": evaluate_word_similarity(vectors, data_file("wordsim353.tsv"))["spearman"],
        "simlex999": evaluate_word_similarity(vectors, data_file("simlex999.txt"))["spearman"],
        "analogy": evaluate_analogies(vectors, data_file(ANALOGY_SET), 30000)["accuracy"],
        "vocabulary": len(vectors.words),
    }


def run_gensim(directory: Path, architecture: str, epochs: int, threads: int, seed: int) -> dict:
    import pickle

    from gensim.models import Word2Vec

    with open(directory / "pieces.pkl", "rb") as handle:
        pieces = pickle.load(handle)
    raw_words = sum(len(piece) for piece in pieces)
    rss_before = _rss_mb()
    start = time.perf_counter()
    model = Word2Vec(vector_size=HYPER["vector_size"], window=HYPER["window"], negative=HYPER["negative"],
                     min_count=HYPER["min_count"], sample=HYPER["sample"], sg=int(architecture == "skip-gram"),
                     workers=threads, seed=seed, alpha=0.025, min_alpha=0.0001)
    model.build_vocab(pieces)
    prep = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    model.train(pieces, total_examples=len(pieces), total_words=raw_words, epochs=epochs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    model.wv.save(str(directory / f"gensim-{architecture}.kv"))
    done = _process_marks()
    peak = _peak_mb()  # before the evaluation imports hfssl (torch)
    from hfssl.evaluation.word_vectors import WordVectors

    return {"library": "gensim", "architecture": architecture, **done, "prep_seconds": prep, "train_seconds": seconds,
            "cpu_seconds": cpu, "words_per_second": raw_words * epochs / seconds, "raw_words": raw_words,
            "peak_rss_mb": peak, "rss_growth_mb": peak - rss_before,
            **_evaluate(WordVectors.from_keyed_vectors(model.wv))}


def _process_marks() -> dict:
    """Wall clock now (the parent subtracts its spawn time) and this process's CPU seconds so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"done_at": time.time(), "process_cpu_seconds": usage.ru_utime + usage.ru_stime}


def run_hfssl(directory: Path, architecture: str, epochs: int, threads: int, seed: int, kernel: str) -> dict:
    if kernel == "torch":  # the tile kernel's blocks run on interop threads with one intra-op thread each
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(threads)
    from transformers import AutoModel

    from hfssl.evaluation.word_vectors import WordVectors
    from hfssl.models.word2vec import data as word2vec_data
    from hfssl.recipe import load_recipe
    from hfssl.training.trainer import train

    marks: dict[str, float] = {}
    call = word2vec_data.InputBuilder.__call__

    def timed_call(self, batch, generator):  # noqa: ANN001, ANN202 - records the first training batch
        marks.setdefault("first_batch", time.perf_counter())
        marks.setdefault("first_batch_cpu", time.process_time())
        return call(self, batch, generator)

    word2vec_data.InputBuilder.__call__ = timed_call
    recipe_name = "english_corpus.yaml" if architecture == "skip-gram" else "english_corpus_cbow.yaml"
    recipe = load_recipe(REPO / "recipes" / "word2vec" / recipe_name, [
        f"data.source={directory / 'text'}", f"train.epochs={epochs}", f"train.seed={seed}",
        "train.trackers=[]", "train.progress_bar=false", "train.checkpoint_every=1000000", "eval.protocols=[]",
        f"model.kernel={kernel}", f"model.workers={threads}",
        *(["model.shared_negatives=16", "model.negative_block_size=32", "train.batch_size=8"] if kernel == "torch" else []),
    ])
    output = directory / f"hfssl-{architecture}"
    rss_before = _rss_mb()
    start = time.perf_counter()
    result = train(recipe, output, overwrite=True)  # the engine alone (model and vocabulary saved); repeats reuse the folder
    marks["end"], marks["end_cpu"] = time.perf_counter(), time.process_time()
    done = _process_marks()
    marks["peak_rss_mb"] = _peak_mb()
    total = time.perf_counter() - start
    seconds = marks["end"] - marks["first_batch"]
    raw_words = json.loads((output / "word_counts.json").read_text())["raw_words"]
    model = AutoModel.from_pretrained(output)
    return {"library": "hfssl", "architecture": architecture, **done, "prep_seconds": marks["first_batch"] - start,
            "train_seconds": seconds, "cpu_seconds": marks["end_cpu"] - marks["first_batch_cpu"],
            "words_per_second": raw_words * epochs / seconds, "raw_words": raw_words, "steps": result.steps,
            "end_to_end_seconds": total, "peak_rss_mb": marks["peak_rss_mb"],
            "rss_growth_mb": marks["peak_rss_mb"] - rss_before,
            **_evaluate(WordVectors.from_model(model))}


def _child(args: argparse.Namespace) -> None:
    if args.library == "gensim":
        result = run_gensim(Path(args.directory), args.architecture, args.epochs, args.threads, args.seed)
    else:
        result = run_hfssl(Path(args.directory), args.architecture, args.epochs, args.threads, args.seed, args.kernel)
    result["load_average"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(result))


def _spawn(directory: Path, library: str, architecture: str, epochs: int, threads: int, seed: int,  # noqa: PLR0913
           kernel: str) -> dict:
    command = [sys.executable, __file__, "--child", "--library", library, "--architecture", architecture,
               "--directory", str(directory), "--epochs", str(epochs), "--threads", str(threads), "--seed", str(seed),
               "--kernel", kernel]
    cache = directory / f"numba-cache-{architecture}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "NUMBA_CACHE_DIR": str(cache),  # this checkout's hfssl, whatever is installed
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cold = library == "hfssl" and kernel == "numba" and not cache.exists()
    before = os.getloadavg()[0]
    started = time.time()
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{library} {architecture} failed:\n{completed.stderr[-4000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["load_average_before"] = before
    result["process_seconds"] = result.pop("done_at") - started
    result["kernel"] = f"{kernel} (cold cache)" if cold else kernel if library == "hfssl" else "-"
    return result


def markdown(results: list[dict], info: dict) -> str:
    lines = [
        f"Corpus: {info['raw_words']:,} raw words in {info['documents']:,} documents, {info['epochs']} epoch(s); "
        f"{info['threads']} threads; machine: {info['cpu']}.",
        "",
        "| architecture | library | kernel | words/s | train s | CPU s | cores used | whole process s | process CPU s "
        "| prep s | peak RSS MB | RSS growth MB | WS-353 | SimLex-999 | analogy | load |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        lines.append(
            f"| {row['architecture']} | {row['library']} | {row['kernel']} | {row['words_per_second']:,.0f} | "
            f"{row['train_seconds']:.1f} | {row['cpu_seconds']:.1f} | {row['cpu_seconds'] / row['train_seconds']:.2f} | "
            f"{row['process_seconds']:.1f} | {row['process_cpu_seconds']:.1f} | {row['prep_seconds']:.1f} | "
            f"{row['peak_rss_mb']:.0f} | {row['rss_growth_mb']:.0f} | "
            f"{row['wordsim353']:.3f} | {row['simlex999']:.3f} | {100 * row['analogy']:.2f} % | "
            f"{row['load_average_before']:.1f}/{row['load_average']:.1f} |")
    lines.append("")
    for architecture in dict.fromkeys(row["architecture"] for row in results):
        ours = [row for row in results if row["architecture"] == architecture and row["library"] == "hfssl"
                and "cold" not in row["kernel"]]
        theirs = [row for row in results if row["architecture"] == architecture and row["library"] == "gensim"]
        if ours and theirs:
            def mean(rows: list[dict], key: str) -> float:
                return sum(row[key] for row in rows) / len(rows)

            words = mean(ours, "words_per_second") / mean(theirs, "words_per_second")
            cpu = (mean(theirs, "cpu_seconds") / mean(theirs, "raw_words")) / (mean(ours, "cpu_seconds") / mean(ours, "raw_words"))
            process = mean(theirs, "process_seconds") / mean(ours, "process_seconds")
            lines.append(f"- {architecture}: hfssl / gensim words/s = {words:.2f}x; words per CPU-second = {cpu:.2f}x; "
                         f"whole process {process:.2f}x as fast (means over {len(ours)} + {len(theirs)} runs, "
                         "the cold-cache run left out)")
    return "\n".join(lines) + "\n"


# ---- --whole-process: the two command lines, end to end ----------------------------------------------

#: hfssl log lines that end a phase of ``hfssl train`` (its timestamps are milliseconds of the wall clock).
PHASE_MARKS = (("vocabulary", "word2vec vocabulary:"), ("kernels", "kernels ready"),
               ("first checkpoint", "saved checkpoint"), ("export", "exported word vectors"),
               ("card", "wrote the model card"))


def cpu_kind() -> str:
    """The CPU's model name and its vector extensions that matter here (AVX2, AVX-512, AMX)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = text.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    kinds = [label for label, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"),
                                       ("AMX", "amx_tile")) if flag in flags]
    return f"{os.cpu_count()} x {name} ({', '.join(kinds) or 'no AVX2'})"


#: A log record's time stamp, wherever it starts in a line (a progress bar's ``\r`` updates may precede it).
STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _log_phases(log: str, started: float, ended: float) -> dict[str, float]:
    """Seconds from the spawn to each phase mark of an ``hfssl train`` log (the last checkpoint too)."""
    import datetime as _datetime

    phases: dict[str, float] = {}
    last_checkpoint = None
    for line in log.replace("\r", "\n").splitlines():
        match = STAMP.search(line)
        if match is None:
            continue
        stamp = _datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for name, text in PHASE_MARKS:
            if text in line and name not in phases:
                phases[name] = stamp - started
        if "saved checkpoint" in line:
            last_checkpoint = stamp - started
    if last_checkpoint is not None:
        phases["last checkpoint"] = last_checkpoint
    phases["exit"] = ended - started
    return phases


def _spawn_command(command: list[str], env: dict[str, str], log_path: Path) -> dict:
    """Run ``command`` to its end; its wall seconds, CPU seconds and peak RSS (``os.wait4``), and its log."""
    before = os.getloadavg()[0]
    with open(log_path, "w") as log:
        started_clock, started = time.time(), time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    text = log_path.read_text(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{text[-4000:]}")
    return {"wall_seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "load_before": before, "started": started_clock, "log": text}


def whole_process_run(directory: Path, library: str, architecture: str, threads: int, seed: int) -> dict:
    corpus = directory / "corpus.txt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           # hfssl's caches of this corpus file (its Arrow copy, the word counts) go with the temporary folder
           "HF_DATASETS_CACHE": str(directory / "datasets-cache"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if library == "hfssl":
        recipe = "english_corpus.yaml" if architecture == "skip-gram" else "english_corpus_cbow.yaml"
        command = [sys.executable, "-m", "hfssl.cli", "train", f"recipes/word2vec/{recipe}", f"data.source={corpus}",
                   "eval.protocols=[]", f"model.workers={threads}", f"train.seed={seed}",
                   "--output-dir", str(directory / f"hfssl-{architecture}"), "--overwrite"]
    else:
        command = [sys.executable, "-m", "gensim.scripts.word2vec_standalone", "-train", str(corpus),
                   "-output", str(directory / f"gensim-{architecture}.txt"), "-cbow", str(int(architecture == "cbow")),
                   "-size", str(HYPER["vector_size"]), "-window", str(HYPER["window"]),
                   "-negative", str(HYPER["negative"]), "-min_count", str(HYPER["min_count"]),
                   "-sample", str(HYPER["sample"]), "-iter", str(HYPER["epochs"]), "-alpha", "0.025",
                   "-threads", str(threads), "-binary", "0"]
    result = _spawn_command(command, env, directory / f"{library}-{architecture}.log")
    log = result.pop("log")
    if library == "hfssl":
        result["phases"] = _log_phases(log, result["started"], result["started"] + result["wall_seconds"])
    result.update(library=library, architecture=architecture, command=" ".join(command))
    return result


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def whole_process_markdown(results: list[dict], info: dict) -> str:
    phase_names = ["vocabulary", "kernels", "first checkpoint", "last checkpoint", "export", "card", "exit"]
    lines = [
        f"Corpus file: {info['raw_words']:,} words in {info['documents']:,} lines; {info['threads']} threads; "
        f"machine: {info['cpu']}. Wall s from spawn to exit; CPU s = user + system of the process.",
        "",
        "| architecture | command | run | wall s | CPU s | CPU s / wall s | peak RSS MB | load before | "
        "hfssl phases, s from spawn (" + ", ".join(phase_names) + ") |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in results:
        phases = row.get("phases")
        phase_text = " / ".join(f"{phases[name]:.1f}" if name in phases else "-" for name in phase_names) if phases else ""
        lines.append(f"| {row['architecture']} | {row['library']} | {row['run']} | {row['wall_seconds']:.1f} | "
                     f"{row['cpu_seconds']:.1f} | {row['cpu_seconds'] / row['wall_seconds']:.2f} | "
                     f"{row['peak_rss_mb']:.0f} | {row['load_before']:.1f} | {phase_text} |")
    lines.append("")
    for architecture in dict.fromkeys(row["architecture"] for row in results):
        sides = {library: [row for row in results if row["architecture"] == architecture
                           and row["library"] == library and row["run"] != "first"]
                 for library in ("hfssl", "gensim")}
        if not all(sides.values()):
            continue
        wall = {library: _median([row["wall_seconds"] for row in rows]) for library, rows in sides.items()}
        cpu = {library: _median([row["cpu_seconds"] for row in rows]) for library, rows in sides.items()}
        lines.append(f"- {architecture}: whole process, medians of {len(sides['hfssl'])} + {len(sides['gensim'])} runs: "
                     f"hfssl {wall['hfssl']:.1f} s wall / {cpu['hfssl']:.1f} CPU s, gensim {wall['gensim']:.1f} s / "
                     f"{cpu['gensim']:.1f} CPU s: hfssl is **{wall['gensim'] / wall['hfssl']:.2f}x** as fast "
                     f"({cpu['gensim'] / cpu['hfssl']:.2f}x per CPU-second)")
        first = {library: [row for row in results if row["architecture"] == architecture
                           and row["library"] == library and row["run"] == "first"] for library in ("hfssl", "gensim")}
        if all(first.values()):
            ours, theirs = first["hfssl"][0], first["gensim"][0]
            lines.append(f"  - first runs (hfssl filling its datasets cache of the file): hfssl {ours['wall_seconds']:.1f} s "
                         f"/ {ours['cpu_seconds']:.1f} CPU s, gensim {theirs['wall_seconds']:.1f} s / "
                         f"{theirs['cpu_seconds']:.1f} CPU s: {theirs['wall_seconds'] / ours['wall_seconds']:.2f}x")
        quality = info.get("quality", {}).get(architecture)
        if quality:
            lines.append("  - the vectors each wrote last: " + "; ".join(
                f"{library} {row['vocabulary']:,} words, WS-353 {row['wordsim353']:.3f}, SimLex-999 {row['simlex999']:.3f}"
                for library, row in quality.items()))
    return "\n".join(lines) + "\n"


def _output_quality(directory: Path, architecture: str) -> dict[str, dict]:
    """WS-353 and SimLex-999 Spearman of the text vectors each command wrote last (the same code on both):
    evidence that the two commands trained comparable models, so the seconds compare like with like."""
    from hfssl.evaluation.word_vectors import data_file, evaluate_word_similarity, load_word_vectors

    quality = {}
    for library, path in (("hfssl", directory / f"hfssl-{architecture}" / "vectors.txt"),
                          ("gensim", directory / f"gensim-{architecture}.txt")):
        vectors = load_word_vectors(path)
        quality[library] = {"vocabulary": len(vectors.words),
                            "wordsim353": evaluate_word_similarity(vectors, data_file("wordsim353.tsv"))["spearman"],
                            "simlex999": evaluate_word_similarity(vectors, data_file("simlex999.txt"))["spearman"]}
    return quality


def whole_process(args: argparse.Namespace, architectures: list[str]) -> tuple[str, dict]:
    cpu = cpu_kind()
    print(f"CPU: {cpu}; {args.threads} threads per command", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_word2vec_") as temporary:
        directory = Path(temporary)
        info = prepare_corpus(directory, 0.25 if args.quick else 1.0)
        import pickle

        with open(directory / "pieces.pkl", "rb") as handle:
            pieces = pickle.load(handle)
        with open(directory / "corpus.txt", "w", encoding="utf-8") as handle:
            handle.writelines(" ".join(piece) + "\n" for piece in pieces)
        del pieces
        info.update(threads=args.threads, cpu=cpu, quality={})
        results = []
        for architecture in architectures:
            runs = [("first", "hfssl"), ("first", "gensim")]
            for repeat in range(args.repeats):
                order = ("gensim", "hfssl") if repeat % 2 == 0 else ("hfssl", "gensim")
                runs += [(str(repeat + 1), library) for library in order]
            for run, library in runs:
                result = whole_process_run(directory, library, architecture, args.threads, args.seed)
                result["run"] = run
                results.append(result)
                print(f"{architecture:9s} {library:6s} run {run:5s} wall {result['wall_seconds']:6.1f} s  "
                      f"CPU {result['cpu_seconds']:6.1f} s  load {result['load_before']:.1f}", flush=True)
            info["quality"][architecture] = _output_quality(directory, architecture)
    return whole_process_markdown(results, info), {"info": info, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip-gram only, 1 epoch, a quarter of the corpus "
                        "(with --whole-process: a quarter of the corpus, the recipes as they are)")
    parser.add_argument("--architectures", nargs="+", default=None, choices=["skip-gram", "cbow"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kernel", default="numba", choices=["numba", "torch"], help="hfssl's model.kernel")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="alternate gensim/hfssl runs this many times")
    parser.add_argument("--whole-process", action="store_true",
                        help="time `hfssl train` against gensim's word2vec_standalone command, each a whole process")
    parser.add_argument("--output", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    parser.add_argument("--architecture", help=argparse.SUPPRESS)
    parser.add_argument("--directory", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    architectures = args.architectures or (["skip-gram"] if args.quick else ["skip-gram", "cbow"])
    if args.whole_process:
        table, data = whole_process(args, args.architectures or ["cbow", "skip-gram"])
        print(table)
        if args.output:
            args.output.write_text(json.dumps(data, indent=2) + "\n")
        if args.markdown:
            args.markdown.write_text(table)
        return
    epochs = 1 if args.quick else HYPER["epochs"]
    with tempfile.TemporaryDirectory(prefix="bench_word2vec_") as temporary:
        directory = Path(temporary)
        info = prepare_corpus(directory, 0.25 if args.quick else 1.0)
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "unknown")
        info.update(epochs=epochs, threads=args.threads, cpu=f"{os.cpu_count()} x {cpu}")
        results = []
        for architecture in architectures:
            if args.kernel == "numba":  # the first run after an install compiles the kernel: one such run, apart
                result = _spawn(directory, "hfssl", architecture, epochs, args.threads, args.seed, args.kernel)
                results.append(result)
                print(f"{architecture:9s} hfssl (cold numba cache) process {result['process_seconds']:6.1f} s", flush=True)
            for repeat in range(args.repeats):
                order = ("gensim", "hfssl") if repeat % 2 == 0 else ("hfssl", "gensim")
                for library in order:
                    result = _spawn(directory, library, architecture, epochs, args.threads, args.seed + repeat,
                                    args.kernel)
                    results.append(result)
                    print(f"{architecture:9s} {library:6s} {result['words_per_second']:>10,.0f} words/s  "
                          f"train {result['train_seconds']:6.1f} s  process {result['process_seconds']:6.1f} s  "
                          f"cores {result['cpu_seconds'] / result['train_seconds']:.2f}  WS353 {result['wordsim353']:.3f}  "
                          f"SimLex {result['simlex999']:.3f}  analogy {100 * result['analogy']:.2f} %  "
                          f"load {result['load_average']:.1f}", flush=True)
    table = markdown(results, info)
    print(table)
    if args.output:
        args.output.write_text(json.dumps({"info": info, "results": results}, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
