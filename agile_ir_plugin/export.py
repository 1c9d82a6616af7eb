"""ONNX export with dynamic batch / height / width, checked against PyTorch with onnxruntime.

Pure torch (``onnx``, ``onnxscript`` and ``onnxruntime`` are optional: the ``dev`` extra).

Exporter
--------
We use PyTorch's ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``, needs
``onnxscript``).  The legacy TorchScript exporter (``dynamo=False``) cannot export ESC
(``aten::rot90`` of the geometric kernel ensemble) nor AgileIR (``aten::block_diag`` of the
grouped Q/K/V projection) at opset 17/18, so it is not an option for this plugin; it stays
reachable through ``dynamo=False`` for other models.

Dynamic shapes are declared with ``torch.export.Dim.DYNAMIC``.  Python branches on the input size
(``if pad_h or pad_w: F.pad(...)``) are *traced*, not kept: the graph follows the branch that the
example input took.  Two consequences, both handled here:

- the example input should need padding (H and W *not* multiples of the model's window / down-
  sampling factor): the padded path with a symbolic pad amount is also correct when that amount
  is 0, while the unpadded path is wrong for every other size.  ``export_onnx`` therefore checks
  the ONNX model at the example size *and* at a second, different size (``probe_hw``; default
  ``(H + 5, W + 3)``), so a graph that silently specialised to one size fails loudly;
- a batch of 1 is specialised by ``torch.export`` (0/1 specialisation): with a dynamic batch the
  example is repeated to batch 2 for tracing.

A Conv whose group count depends on the batch (per-sample kernels run as one conv of a
(1, B*C, H, W) view with groups=B*C, as ESC's ConvAttn does in eager) cannot be translated with a
symbolic batch: the ONNX Conv ``group`` is a static attribute.  Such a model must switch to a
batch-independent formulation while ``torch.compiler.is_exporting()`` /
``torch.onnx.is_in_onnx_export()`` is true; ESC and ESC-FP do
(``agile_ir_plugin.archs.esc_arch.per_sample_depthwise_conv``: a sum of shifted taps), so they
export with a dynamic batch.

The dynamo exporter's lowest native opset is 18.  Asking for 17 makes it down-convert, which fails
for ``Reduce*`` nodes whose axes are inputs (the file then stays at 18 and a traceback is logged),
so the default is 18 (the issue asks for >= 17).

Model caches filled during tracing would hold fake tensors afterwards; one eager forward of the
example input before exporting fills them with real tensors (and gives the reference output).
"""
import os
import warnings

import torch

DEFAULT_OPSET = 18
ATOL = 1e-4


class ExportError(RuntimeError):
    """The model did not export, or the exported graph disagrees with PyTorch."""


def _probe_hw(h, w):
    return h + 5, w + 3


def onnxruntime_max_abs_diff(model, path, inputs):
    """Max |onnxruntime(path) - model| over ``inputs`` (a list of tensors), or None without
    onnxruntime.  Raises ExportError when the output shapes differ."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(os.fspath(path), providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = model(x).float().cpu().numpy()
        try:
            out = session.run(None, {name: x.cpu().numpy()})[0]
        except Exception as err:  # onnxruntime raises its own exception types
            raise ExportError(f'onnxruntime failed on input {tuple(x.shape)} ({type(err).__name__}: '
                              f'{str(err).strip().splitlines()[0][:300]}); the graph is probably specialised '
                              'to the example size: export with an H, W that needs padding.') from None
        if out.shape != ref.shape:
            raise ExportError(f'ONNX output {out.shape} != PyTorch output {ref.shape} for input {tuple(x.shape)}; '
                              'the graph is specialised to the example size: export with an H, W that needs padding.')
        worst = max(worst, float(abs(out - ref).max()))
    return worst


def export_onnx(model, path, example_input, opset=DEFAULT_OPSET, dynamic_hw=True, dynamic_batch=True,
                atol=ATOL, probe_hw=None, dynamo=True):
    """Export ``model`` (a (B, C, H, W) -> image network) to the ONNX file ``path``.

    Args:
        example_input: a (B, C, H, W) float tensor used for tracing; choose H, W that need padding
            (see the module docstring).
        opset: ONNX opset (>= 17; the dynamo exporter writes >= 18 natively).
        dynamic_hw: height and width are symbolic in the ONNX graph.
        dynamic_batch: the batch size is symbolic too (all the plugin's archs, ESC / ESC-FP included).
        atol: largest accepted |onnxruntime - torch| (checked only when onnxruntime is installed).
        probe_hw: the second (H, W) checked with onnxruntime; default (H + 5, W + 3).
        dynamo: True for the ``torch.export`` exporter (default), False for the legacy one.

    Returns:
        The max abs difference between onnxruntime and PyTorch over the example input and the probe
        input (the batch also changed when it is dynamic), or None without onnxruntime.

    Raises:
        ExportError: export failed, or onnxruntime disagrees with PyTorch by more than ``atol``.
    """
    if not (isinstance(example_input, torch.Tensor) and example_input.dim() == 4):
        raise ExportError(f'example_input must be a (B, C, H, W) tensor, got '
                          f'{getattr(example_input, "shape", type(example_input).__name__)}')
    if opset < 17:
        raise ExportError(f'opset {opset} is too old: use 17 or later (18 is native to the exporter).')
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    x = example_input.detach().float().cpu()
    if dynamic_batch and x.shape[0] == 1:
        x = x.repeat(2, 1, 1, 1)  # a batch of 1 would be specialised
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)  # fill size caches with real tensors before tracing
            _export(model, x, path, opset, dynamic_hw, dynamic_batch, dynamo)
        b, c, h, w = x.shape
        ph, pw = probe_hw or _probe_hw(h, w)
        gen = torch.Generator().manual_seed(0)
        probe = torch.rand((b + 1 if dynamic_batch else b, c, ph if dynamic_hw else h, pw if dynamic_hw else w),
                           generator=gen)
        diff = onnxruntime_max_abs_diff(model, path, [x, probe])
    finally:
        model.train(was_training)
    if diff is not None and not diff <= atol:
        raise ExportError(f'{path}: onnxruntime differs from PyTorch by {diff:.3g} > {atol:g}.')
    return diff


def _export(model, x, path, opset, dynamic_hw, dynamic_batch, dynamo):
    axes = ([0] if dynamic_batch else []) + ([2, 3] if dynamic_hw else [])
    kwargs = dict(opset_version=opset, input_names=['input'], output_names=['output'])
    names = {0: 'batch', 2: 'height', 3: 'width'}  # the graph's axis names (torch.export's own: s77, s53)
    if dynamo:
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise ExportError('the torch.export ONNX exporter needs onnxscript: pip install onnxscript') from None
        big = sum(p.numel() * p.element_size() for p in model.parameters()) > 2 ** 30
        kwargs.update(dynamo=True, external_data=big, dynamic_shapes=({a: names[a] for a in axes},),
                      verbose=False)
    else:
        kwargs.update(dynamo=False, dynamic_axes={'input': {a: names[a] for a in axes},
                                                  'output': {a: 'out_' + names[a] for a in axes}})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # tracer/exporter chatter; correctness is checked afterwards
            torch.onnx.export(model, (x,), path, **kwargs)
    except Exception as err:
        lines = [line for line in str(err).splitlines() if line.strip()]
        summary = next((line for line in lines if line.startswith('<class')), lines[-1] if lines else '')
        hint = ' (with dynamic_batch=True; a fixed batch may export)' if dynamic_batch else ''
        raise ExportError(f'torch.onnx.export of {type(model).__name__} failed{hint} ({type(err).__name__}): '
                          f'{summary[:400]}') from err
