"""Sharded training: FSDP2 through Accelerate, and what cannot be sharded refused before any work.

The engine (:mod:`hfssl.training.trainer`) is the same loop under every strategy; this module holds
what differs under FSDP2 (``torch.distributed.fsdp.fully_shard``, chosen with an Accelerate config
that says ``distributed_type: FSDP`` and ``fsdp_version: 2``, as ``recipes/accelerate/fsdp2_*.yaml``):

* **One prepared model.** Accelerate shards the whole hfssl model (student, teacher, heads) as one
  FSDP unit (``fsdp_auto_wrap_policy: NO_WRAP`` in the shipped configs; a transformer-layer policy
  works too): every parameter becomes a ``DTensor`` sharded on dimension 0 over the processes, a
  teacher's exactly like its student's, so the EMA update (``torch._foreach_lerp_`` in
  :meth:`hfssl.modeling_utils.HfsslPreTrainedModel.update_teacher`) runs shard by shard with no
  communication, and the teacher stays equal to what DDP computes.
* **The optimiser** is built from the sharded parameters: :func:`shard_model` runs ``fully_shard``
  before ``build_optimizer`` (hfssl's groups, decay, constant rates and scales are made from the
  sharded parameters, and the moments are sharded at the first step); Accelerate's ``prepare``
  keeps the FSDP module as it is, and :func:`restore_sharded_optimizer` undoes its parameter swap.
* **Freezes and scheduled weight decay** need nothing: a frozen parameter's ``grad = None`` and the
  groups' ``weight_decay`` apply to the sharded parameters as they do to full ones.
* **0-d parameters.** ``fully_shard`` refuses scalar parameters (CLIP's ``logit_scale``): they are
  made 1-d (one element) before sharding (:func:`shard_model`), so they
  are sharded and their gradient averaged like every other one (kept out of FSDP they would not be
  averaged over the processes, and the processes would drift apart); the gathered model gets them
  back as 0-d tensors before it is saved, so the export is the plain ``transformers`` layout.
* **Mixed precision** is DDP's: the forward runs under the Accelerator's autocast
  (:func:`autocast_forward`), the parameters stay float32 and are all-gathered in float32; the config's
  FSDP2 ``MixedPrecisionPolicy`` (bf16 parameters, no autocast) is not used.
* **Code outside ``forward``** that reads the weights (training callbacks: online kNN, anything calling
  ``get_embeddings`` or CLIP's ``get_*_features``) is given a plain float32 copy gathered on every process,
  at the steps where it reads them (:func:`callback_model`).
* **The finite-weights check** looks at each process's own shards (:func:`local_tensor`); the
  engine then asks all processes, so they agree.
* **Checkpoints** are Accelerate's ``save_state``/``load_state`` with the config's
  ``fsdp_state_dict_type``; the shipped configs pick ``SHARDED_STATE_DICT`` (each process writes
  its shard through ``torch.distributed.checkpoint``: no process ever holds the whole model or
  optimiser state); :func:`load_sharded_state` resumes them, the optimiser's state as it was (also
  for parameters frozen until then), so a resumed run is bit-identical to the uninterrupted one on the CPU.
* **The final model** is gathered once on the main process (:func:`gather_full_model`: a plain,
  unsharded copy on which ``save_pretrained``, export, evaluation and the card run).

Accelerate 1.16 turns an FSDP config into FSDP only on accelerator devices: on CPU processes (gloo)
it silently trains with DDP. :func:`enable_cpu_fsdp` completes its state so that the same config
gives FSDP2 on CPUs too (the two-process tests run this way).

Refusals, before the optimiser, the run folder or any step (:func:`check_strategy`):

* A backbone with BatchNorm (any ``_BatchNorm`` among ``get_backbone()``'s modules: the ResNet
  recipes, MoCo v2 with its shuffled BN) under FSDP: each process keeps its own running statistics
  (buffers, which FSDP neither shards nor averages), so the released backbone would carry one
  process's statistics rather than the global batch's that DDP with ``train.sync_batchnorm=true``
  gives. Decided by the modules of the built backbone, not by the method's name. BatchNorm in the
  training-only heads (MoCo v3's MLPs, DINO's ``head_batch_norm``) is kept: in training it
  normalises each process's batch exactly as under DDP without ``train.sync_batchnorm``, and the
  main process's running statistics are broadcast before every forward, as DDP does with its buffers
  (:func:`broadcast_batch_norm_statistics`), so checkpoints and the saved model hold that one set.
  ``train.sync_batchnorm`` itself is refused under FSDP2 (hfssl synchronises BatchNorm under DDP).
* Sparse embeddings (``nn.Embedding(sparse=True)``: word2vec's torch kernel) under FSDP.
* FSDP1 (``fsdp_version: 1``), which shards flattened parameters and breaks EMA teachers; an FSDP2 config
  whose ``fsdp_state_dict_type`` is not ``SHARDED_STATE_DICT`` (the checkpoints hfssl resumes exactly).
* A ``--resume`` checkpoint written under another strategy (:func:`check_checkpoint_layout`): FSDP2's
  sharded checkpoints resume under FSDP2 only, whole ones under anything else.
* A DeepSpeed launch on CPU processes (:func:`refuse_cpu_deepspeed`, before the Accelerator is made):
  Accelerate 1.16 runs DeepSpeed on accelerator devices only.
* DeepSpeed for a model with an EMA teacher (``teacher_pairs``): ZeRO shards the optimiser's
  parameters only and cannot keep a second, teacher copy in step; use FSDP2. The check needs no
  ``deepspeed`` package.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, parse_flag_from_env
from torch import nn

from hfssl.errors import ResumeError
from hfssl.settings import RecipeError

logger = logging.getLogger(__name__)

FSDP2_CONFIGS = "recipes/accelerate/fsdp2_cpu_2proc.yaml (CPU) or recipes/accelerate/fsdp2_gpu.yaml (GPUs)"
DDP_CONFIGS = "recipes/accelerate/cpu_2proc.yaml (CPU) or recipes/accelerate/multi_gpu_bf16.yaml (GPUs)"


@dataclass
class ShardingPlan:
    """What the engine must undo or redo for a sharded model: the class to rebuild a plain copy from,
    and the names of the parameters that were made 1-d from 0-d."""

    model_class: type[nn.Module]
    scalar_parameters: list[str] = field(default_factory=list)


def strategy(accelerator: Accelerator) -> str:
    """``"fsdp2"``, ``"fsdp1"``, ``"deepspeed"`` or ``"replicated"`` (one process, DDP and the rest)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return "fsdp2" if accelerator.is_fsdp2 else "fsdp1"
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return "deepspeed"
    return "replicated"


def is_fsdp2(accelerator: Accelerator) -> bool:
    return strategy(accelerator) == "fsdp2"


def enable_cpu_fsdp(accelerator: Accelerator) -> None:
    """Make an FSDP launch on CPU processes (``use_cpu: true`` + ``distributed_type: FSDP``) use FSDP.

    ``accelerate launch`` exports ``ACCELERATE_USE_FSDP=true`` and the ``FSDP_*`` settings, but
    Accelerate's state sets ``DistributedType.FSDP`` only for accelerator devices: on CPUs the run
    would be plain DDP, without a word. FSDP2 runs on CPUs with gloo, so the state is completed here
    with the plugin built from the same settings (as Accelerate builds it on GPUs).
    """
    if not parse_flag_from_env("ACCELERATE_USE_FSDP"):  # read as Accelerate reads its launch variables
        return
    if accelerator.distributed_type != DistributedType.MULTI_CPU:
        return
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # its mixed-precision policy is not used (shard_model)
    state = AcceleratorState()
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    logger.info("FSDP%d on %d CPU processes (gloo)", plugin.fsdp_version, accelerator.num_processes)


def refuse_cpu_deepspeed(cpu: bool) -> None:
    """Refuse a DeepSpeed launch (``ACCELERATE_USE_DEEPSPEED=true``, as ``accelerate launch`` exports for
    ``distributed_type: DEEPSPEED``) on CPU processes, before the Accelerator is made (``cpu``: what it will
    be given). Accelerate 1.16 runs DeepSpeed on accelerator devices only: on CPUs its Accelerator fails
    with an ImportError without the ``deepspeed`` package, and with it trains each process alone, failing
    at the end. Needs no ``deepspeed`` package.

    Raises:
        RecipeError: naming the FSDP2 CPU config, which shards on CPUs.
    """
    if not parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):
        return
    if not (cpu or parse_flag_from_env("ACCELERATE_USE_CPU")):
        return
    raise RecipeError(
        "the launch asks for DeepSpeed, but Accelerate runs DeepSpeed on GPUs only and these processes run on the "
        "CPU. Shard on CPUs with FSDP2 (accelerate launch --config_file recipes/accelerate/fsdp2_cpu_2proc.yaml), "
        "or launch recipes/accelerate/deepspeed_zero2.yaml on a machine with GPUs")


def _batch_norm_modules(model: nn.Module) -> list[str]:
    return [name or type(model).__name__ for name, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)]


def _sparse_modules(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if getattr(module, "sparse", False) is True]


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_strategy(model: nn.Module, accelerator: Accelerator, method: str, sync_batchnorm: bool = False,
                   checkpoint: Path | None = None) -> None:
    """Refuse, before any work, a model the launch's strategy cannot train (see the module docstring), and a
    ``checkpoint`` to resume that another strategy wrote.

    Raises:
        RecipeError: naming what in the model is the obstacle and which launch configuration to use.
        ResumeError: the checkpoint's layout (sharded or full) is not the one this launch reads.
    """
    kind = strategy(accelerator)
    if checkpoint is not None:
        check_checkpoint_layout(Path(checkpoint), kind == "fsdp2")
    if kind == "fsdp1":
        raise RecipeError(
            "the Accelerate config asks for FSDP version 1, which shards flattened parameters and breaks EMA "
            f"teachers; hfssl trains with FSDP version 2: set fsdp_version: 2 in the config ({FSDP2_CONFIGS})")
    if kind == "fsdp2":
        batch_norm = _batch_norm_modules(model.get_backbone())
        if batch_norm:
            raise RecipeError(
                f"the {method} model's backbone has BatchNorm layers ({_listed(batch_norm)}): under FSDP each process "
                "keeps its own running statistics, so the released backbone would carry one process's statistics "
                "instead of the global batch's. Use DDP: accelerate launch --config_file "
                "recipes/accelerate/cpu_2proc.yaml (multi_gpu_bf16.yaml on GPUs) with train.sync_batchnorm=true "
                "(MoCo v2: its shuffled BN needs DDP too), or shard a backbone without BatchNorm (a ViT)")
        state_dict_type = accelerator.state.fsdp_plugin.state_dict_type
        if getattr(state_dict_type, "name", state_dict_type) != "SHARDED_STATE_DICT":
            raise RecipeError(
                "hfssl's FSDP2 checkpoints are sharded state dicts (resumed exactly); the config's "
                f"fsdp_state_dict_type is {getattr(state_dict_type, 'name', state_dict_type)}: set "
                f"fsdp_state_dict_type: SHARDED_STATE_DICT (as {FSDP2_CONFIGS}); the final model is saved whole "
                "either way")
        if sync_batchnorm:
            raise RecipeError(
                "train.sync_batchnorm=true is not supported under FSDP2 (hfssl synchronises BatchNorm under DDP only): "
                f"set train.sync_batchnorm=false, or train with DDP ({DDP_CONFIGS})")
        sparse = _sparse_modules(model)
        if sparse:
            raise RecipeError(
                f"the {method} model has sparse embeddings ({_listed(sparse)}), whose gradients FSDP cannot shard: "
                f"train it with DDP ({DDP_CONFIGS})")
    if kind == "deepspeed":
        teachers = [teacher for teacher, _ in getattr(model, "teacher_pairs", ())]
        if teachers:
            raise RecipeError(
                f"the {method} model has an EMA teacher ({', '.join(teachers)}) updated outside the optimiser, which "
                "DeepSpeed cannot keep in step with its sharded student (ZeRO partitions what one optimiser holds). "
                f"Use FSDP2 instead: accelerate launch --config_file {FSDP2_CONFIGS}")


def check_checkpoint_layout(checkpoint: Path, fsdp2: bool) -> None:
    """Refuse to resume a checkpoint written under another strategy: FSDP2 writes the model and the optimiser
    as shards (``pytorch_model_fsdp_0/``, ``optimizer_0/``), every other strategy as whole files
    (``model.safetensors``, ``optimizer.bin``); each reads only its own layout.

    Raises:
        ResumeError: naming the checkpoint and the launch that resumes it.
    """
    sharded = any(checkpoint.glob("pytorch_model_fsdp_*/.metadata"))
    if fsdp2 and not sharded:
        raise ResumeError(
            f"--resume: checkpoint {checkpoint} was written without FSDP2 (whole model.safetensors and optimizer.bin), "
            "and FSDP2 resumes its own sharded checkpoints only: resume it with the launch that wrote it "
            f"(DDP: {DDP_CONFIGS}, or one process), or start a new FSDP2 run in another --output-dir")
    if sharded and not fsdp2:
        raise ResumeError(
            f"--resume: checkpoint {checkpoint} holds FSDP2 shards (pytorch_model_fsdp_0/, optimizer_0/), which only "
            f"an FSDP2 launch reads: resume it with accelerate launch --config_file {FSDP2_CONFIGS}")


def shard_model(model: nn.Module, accelerator: Accelerator) -> ShardingPlan | None:
    """Under FSDP2, shard ``model`` in place (``fully_shard``) before its optimiser is built; else nothing.

    Every 0-d parameter is made 1-d first. The units are the config's ``fsdp_auto_wrap_policy``
    (``NO_WRAP`` in the shipped configs: the whole model is one unit; a transformer-layer policy gives
    each layer its own unit, then the root) and the root, with the config's ``fsdp_reshard_after_forward``
    and offload policy. Accelerate's ``prepare`` then finds an FSDP module and keeps it.

    Mixed precision is DDP's: the forward runs under the Accelerator's autocast (:func:`autocast_forward`;
    Accelerate's FSDP2 ``prepare`` would instead keep float32 only in FSDP2's ``MixedPrecisionPolicy``,
    which casts the parameters to bf16 with no autocast, so float32 buffers and bf16 activations meet
    in the losses: DINO's centred targets fail). The parameters are all-gathered in float32 (twice the
    traffic of a bf16 policy), and every op computes in the dtype it has under DDP.
    Sharding here rather than in ``prepare`` (which would also carve out the input and output embeddings
    as their own units, as for a language model) keeps tied weights (BERT's decoder and its bias) in
    one unit, and builds the optimiser directly from the sharded parameters.
    """
    if not is_fsdp2(accelerator):
        return None
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy, get_module_children_bottom_up
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    plan = ShardingPlan(type(model))
    for module_name, module in model.named_modules():
        for name, parameter in list(module.named_parameters(recurse=False)):
            if parameter.dim() == 0:
                module.register_parameter(name, nn.Parameter(parameter.detach().reshape(1).clone(),
                                                             requires_grad=parameter.requires_grad))
                plan.scalar_parameters.append(f"{module_name}.{name}" if module_name else name)
    if plan.scalar_parameters:
        logger.info("FSDP2: %s made 1-d for sharding (0-d again in the saved model)",
                    ", ".join(plan.scalar_parameters))
    plugin = accelerator.state.fsdp_plugin
    plugin.set_auto_wrap_policy(model)
    options = {"mp_policy": MixedPrecisionPolicy(), "offload_policy": plugin.cpu_offload}  # float32: autocast below
    wrap = fsdp2_prepare_auto_wrap_policy(plugin, model)
    if wrap is not None:
        for module in get_module_children_bottom_up(model)[:-1]:
            if wrap(module):
                fully_shard(module, reshard_after_forward=plugin.reshard_after_forward, **options)
    fully_shard(model, **options)  # the root: torch decides whether it reshards after forward
    autocast_forward(model, accelerator)
    return plan


def autocast_forward(model: nn.Module, accelerator: Accelerator) -> None:
    """Run ``model``'s forward under the Accelerator's autocast when it trains in mixed precision, as
    Accelerate's ``prepare`` does for every strategy but FSDP2 (FSDP2's own hooks still run around it)."""
    if not accelerator.native_amp:
        return
    forward = type(model).forward

    @functools.wraps(forward)
    def forward_under_autocast(self: nn.Module, *args: object, **kwargs: object) -> object:
        with accelerator.autocast():
            return forward(self, *args, **kwargs)

    model.forward = types.MethodType(forward_under_autocast, model)


def restore_sharded_optimizer(optimizer: torch.optim.Optimizer, groups: list[list[torch.Tensor]]) -> None:
    """Give the prepared optimiser back the sharded parameters it was built from (``groups``, one list per
    parameter group, taken before ``prepare``), and check that each is a sharded ``DTensor``.

    Accelerate 1.16's FSDP2 ``prepare`` swaps every optimiser parameter for a placeholder and maps it back
    by the data pointer of its local shard; a parameter whose shard on this process is empty (fewer rows
    than processes: a ViT's ``cls_token`` and position embeddings, CLIP's ``logit_scale``) has pointer 0,
    so on that process several parameters map to the same one (checkpoints then fail, or updates go to
    the wrong parameter). The model was sharded before ``prepare`` and keeps its parameters, so the
    lists taken before are the right ones.
    """
    from torch.distributed.tensor import DTensor

    for group, parameters in zip(optimizer.param_groups, groups, strict=True):
        group["params"] = parameters
    full = [parameter for parameters in groups for parameter in parameters if not isinstance(parameter, DTensor)]
    if full:
        raise RuntimeError(f"FSDP2: {len(full)} optimiser parameters are not sharded; the optimiser would update "
                           "copies that the model does not use")


def load_sharded_state(accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer,
                       checkpoint: Path) -> None:
    """``accelerator.load_state(checkpoint)`` for an FSDP2 run, with the optimiser's state loaded here.

    Accelerate loads the sharded optimiser state into ``get_optimizer_state_dict`` of the fresh
    optimiser, which first gives every parameter a state (a zero-gradient step: ``step`` 1, zero
    moments) and then requires each of them in the checkpoint. A parameter that had no state when
    the checkpoint was written (frozen until then: DINO's last layer, SwAV's prototypes) fails the
    load; kept, its made-up ``step`` would change its first real update. Here the checkpoint's
    entries are loaded and the parameters it has no state for are left without one, as in the run
    that wrote it, so the resumed run repeats the uninterrupted one exactly.
    """
    import torch.distributed.checkpoint as dcp
    from accelerate.utils.constants import OPTIMIZER_NAME
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    optimizers, accelerator._optimizers = accelerator._optimizers, []
    try:
        accelerator.load_state(str(checkpoint))  # model, RNG and sampler states
    finally:
        accelerator._optimizers = optimizers
    reader = dcp.FileSystemReader(str(Path(checkpoint) / f"{OPTIMIZER_NAME}_0"))
    saved = set(reader.read_metadata().state_dict_metadata)
    inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate's AcceleratedOptimizer wraps it
    state = {"optimizer": get_optimizer_state_dict(model, inner)}
    dcp.load(state, storage_reader=reader, planner=DefaultLoadPlanner(allow_partial_load=True))
    loaded = state["optimizer"]
    loaded["state"] = {name: values for name, values in loaded["state"].items()
                       if any(key.startswith(f"optimizer.state.{name}.") for key in saved)}
    set_optimizer_state_dict(model, inner, loaded, options=StateDictOptions(strict=False))
    for name, parameter in model.named_parameters():  # no made-up state for what had none
        if name not in loaded["state"]:
            inner.state.pop(parameter, None)


def broadcast_batch_norm_statistics(model: nn.Module) -> None:
    """The main process's BatchNorm running statistics to every process, before each forward: what DDP
    does with its buffers (``broadcast_buffers``), so that heads with BatchNorm keep one set of statistics
    (saved in checkpoints and the final model) rather than one per process."""
    import torch.distributed as dist

    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for buffer in module.buffers(recurse=False):
                dist.broadcast(buffer.data, src=0)


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a ``DTensor``; any other tensor as it is."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


@contextlib.contextmanager
def callback_model(prepared: nn.Module, unwrapped: nn.Module, plan: ShardingPlan | None, accelerator: Accelerator,
                   callback: Any, step: int) -> Iterator[nn.Module]:
    """The model a training callback is given at ``step``: the training model itself, except under FSDP2
    when the callback reads the weights at that step (``callback.reads_model(step)``, by default every step):
    then a plain float32 copy gathered on every process (:func:`gather_full_model`), the weights DDP's callbacks see (FSDP2's own ``unshard`` would give them
    in the policy's dtype, and only the root's unit).
    Every process must enter; the copy is dropped afterwards, so its memory is held only while it is used."""
    if plan is None or not callback.reads_model(step):
        yield unwrapped
        return
    copy = gather_full_model(prepared, plan, accelerator, every_process=True)
    try:
        yield copy
    finally:
        del copy


def gather_full_model(prepared: nn.Module, plan: ShardingPlan, accelerator: Accelerator,
                      every_process: bool = False) -> nn.Module | None:
    """The trained model as a plain, unsharded float32 copy on the main process (``None`` on the others), or
    on every process with ``every_process``; every process must call it. Training-only state (queues,
    centres: replicated buffers) is copied too."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=not every_process)  # cpu_offload: main process only
    full = get_model_state_dict(prepared, options=options)
    training_state = {name: tensor.detach().cpu().clone() for name, tensor in prepared.training_state_dict().items()}
    if not (every_process or accelerator.is_main_process):
        return None
    for name in plan.scalar_parameters:
        full[name] = full[name].reshape(())
    with torch.random.fork_rng(devices=[]):  # its random initialisation must not move the training's RNG
        plain = plan.model_class(prepared.config)
    plain.load_state_dict(full, strict=True)
    if training_state:
        plain.load_training_state_dict(training_state)
    plain.train(prepared.training)
    return plain.to(accelerator.device)
