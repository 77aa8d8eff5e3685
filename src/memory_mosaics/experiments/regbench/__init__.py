"""RegBench in-context language learning (Section 7, Figure 9; Akyürek et al., 2024), after ``docs/regbench.md``.

Modules: ``automata`` (random PFAs, sequences, exact next-symbol distributions), ``metrics`` (pooled accuracy and TVD),
``ngram`` (in-context n-gram baselines with back-off), ``train`` (one training run), ``sweep`` (the runs of a grid, the
selected ones), ``report`` (table and plots with the published numbers); the command is ``memory_mosaics.cli.regbench``
(``mosaic regbench``). Section numbers (§N) throughout the package are those of ``docs/regbench.md``.

Choices where the sources leave room (each keeps the protocol's law of the data and its metrics):
- Scoring: every input position of every test sequence, pooled, including positions whose target is '|' (§4, the
  plotted metrics), although the Memory Mosaics paper's text speaks of "the last token"; TVD is the halved L1.
- Splits: each automaton has its own generator seeded by (data seed, split, index), so the 500 test and 500 validation
  automata are the same for every N and the training sets are nested (the benchmark's test set changed with N, §3).
- Automata are not minimised or trimmed: the next-symbol distribution depends on the language only (§1).
- The n-gram distribution is not renormalised when every seen letter has already followed the history (as in the
  benchmark's algorithm); renormalising changes the pooled TVD by less than 1e-4.
- Sequences are right-padded per batch instead of per split (causal models are unaffected); ignored labels are -1.
- Every model gets the same optimiser, schedule, gradient clip (1.0, the Memory Mosaics glue's value), dropout and the
  glue's 1/sqrt(d) logit scaling (``scale_logits``, on in the CPU default and under ``--glue``); the recurrent
  baselines (LSTM, Mamba, RWKV) take those of these options that apply to them (``train`` says which) and a body of
  the Memory Mosaic's size.
"""
