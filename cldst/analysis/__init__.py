"""Tables from finished runs (pandas, no drawing): the results table (results), the order of a
setting's values (ordering), the summary tables and their one pivot (summary), a cell's runs and
one picked run (cells), was every task learned (tasks_learned), reuse and capacity (reuse), the
baselines (baselines) and the protocol ablation (protocol_ablation)."""
