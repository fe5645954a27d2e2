"""Figures from tables (matplotlib and seaborn), drawing only: the shared style (style), one run's
(run), the study's (study), reuse (reuse), baselines (baselines) and the protocol ablation
(protocol_ablation). The tables they draw come from cldst.analysis."""
