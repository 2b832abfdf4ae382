"""zenmon's tools: the demo, the benchmarks and their naive baselines, node subprocesses.

They import the library as any user would; the library never imports them. Run them
as ``zenmon demo``, ``zenmon bench`` and ``zenmon soak`` (:mod:`zenmon.cli`), or as modules:
``python -m zenmon.tools.demo``, ``python -m zenmon.tools.bench_local``,
``python -m zenmon.tools.bench_remote``, ``python -m zenmon.tools.soak``.
"""
