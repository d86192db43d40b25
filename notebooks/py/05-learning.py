# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: ruvector-lab (.venv)
#     language: python
#     name: ruvector-lab
# ---

# %% [markdown]
# # 05 · Learning: LoRA adapters and forgetting, with and without EWC
#
# **Question.** A small LoRA adapter on the query side lifts retrieval on a task it is trained on. Trained next
# on a second task, how much of the first does it forget, and how much does EWC (elastic weight consolidation)
# keep, at what cost to the second?
#
# **Data.** Computed live: the library's experiment (`ruvector_lab.learning.experiment.synthetic_experiment`, the
# same as `python -m ruvector_lab.learning.experiment`) on its seeded synthetic task pair at the default size
# (384-d, 40 clusters x 50 members, LoRA rank 8, 20 epochs, EWC lambda 3,000). Each task asks to retrieve a
# cluster's members from queries "phrased" differently (the few directions that tell members apart are
# rotated); tasks A and B share those directions but rotate them differently, so each wants a different
# correction and learning B can undo A. The pipeline has no learning stage, so nothing is
# read from its results. Recall is recall@10 of the adapted test queries (held out from training).

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib.ticker import FuncFormatter

from ruvector_lab.learning.experiment import ExperimentConfig, synthetic_experiment, synthetic_tasks
from ruvector_lab.learning.tasks import SyntheticSpec

pd.set_option("display.width", 140)
spec = SyntheticSpec()
config = ExperimentConfig()
task_a, task_b = synthetic_tasks(spec)
print(f"task A: {task_a.dimensions}-d; LoRA rank {config.lora.rank}, {config.lora.epochs} epochs; "
      f"EWC lambda {config.lambda_:g}; sweep {config.sweep}")
result = synthetic_experiment(spec, config)

# %% [markdown]
# ## Stages
#
# `base`: the embeddings as they are; `after_a`: adapter trained on A; `after_b_plain`: then trained on B with
# nothing holding it back; `after_b_ewc`: the same, consolidated with EWC after A (Fisher of A, anchored at A's
# weights); `joint`: one adapter trained on A and B together, for reference.

# %%
stages = pd.DataFrame(result.recall, index=["task A", "task B"]).T
stages.index.name = "stage"
display(stages.round(3))
summary = pd.Series({
    "lift on A after training on A": result.lift_a,
    "lift on B after training on B (plain)": result.lift_b,
    "share of A's gain kept after B, without EWC": result.retention_plain,
    "share of A's gain kept after B, with EWC": result.retention_ewc,
})
summary.round(3).to_frame("value")

# %% [markdown]
# **What is asserted**, the experiment's own goals: each adapter lifts its task by at least 5 points of recall;
# with EWC, A keeps at least 80% of its gain after B; without EWC it keeps clearly less (at least 20 points
# less). And the picture is coherent: training on B alone (plain) lifts B at least as much as the EWC run does.

# %%
# NBVAL_CHECK_OUTPUT
for goal, met in result.goals.items():
    print(f"{goal:<28} {'met' if met else 'MISSED'}")
assert all(result.goals.values()), result.goals
base_a, base_b = result.recall["base"]
assert result.recall["after_a"][0] > base_a and result.recall["after_b_plain"][1] > base_b
assert result.recall["after_b_plain"][1] >= result.recall["after_b_ewc"][1] - 0.01
assert result.retention_plain < result.retention_ewc

# %% [markdown]
# ## Forgetting, at a glance

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
x = np.arange(len(stages))
ax.bar(x - 0.2, stages["task A"], width=0.4, label="task A")
ax.bar(x + 0.2, stages["task B"], width=0.4, label="task B")
ax.axhline(base_a, color="C0", ls=":", lw=1, label="task A before any training")
ax.set_xticks(x, stages.index, rotation=15)
ax.set_xlabel("training stage")
ax.set_ylabel("recall@10 on held-out queries (fraction)")
ax.set_ylim(0, 1.05)
ax.set_title("Sequential training A then B: plain forgets A, EWC keeps it")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## The EWC trade-off
#
# Recall on both tasks after training on B, for each EWC strength lambda (0 is plain training). Small lambdas
# forget A; large ones stop learning B; the useful range is where both are high.

# %%
sweep = pd.DataFrame(result.sweep, columns=["lambda", "recall A", "recall B"])
display(sweep.round(3))
fig, ax = plt.subplots(figsize=(7, 4.5))
ax.plot(sweep["lambda"], sweep["recall A"], marker="o", label="task A (kept)")
ax.plot(sweep["lambda"], sweep["recall B"], marker="s", label="task B (learned)")
ax.axvline(result.lambda_, color="gray", ls="--", lw=1, label=f"headline lambda {result.lambda_:g}")
ax.set_xscale("symlog", linthresh=10)
ax.set_xlim(left=0, right=float(sweep["lambda"].max()) * 1.5)
ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
ax.set_xlabel("EWC strength lambda (symmetric log scale; 0 = no EWC)")
ax.set_ylabel("recall@10 after training on B (fraction)")
ax.set_ylim(0, 1.05)
ax.set_title("EWC lambda sweep: keeping A against learning B")
ax.legend(fontsize=8)
plt.show()
balanced = sweep.loc[sweep[["recall A", "recall B"]].min(axis=1).idxmax()]
print(f"best balance in the sweep: lambda {balanced['lambda']:g} keeps A at {balanced['recall A']:.3f} and "
      f"learns B to {balanced['recall B']:.3f}; the headline lambda {result.lambda_:g} favours A "
      f"({result.recall['after_b_ewc'][0]:.3f} / {result.recall['after_b_ewc'][1]:.3f})")
assert min(balanced["recall A"], balanced["recall B"]) > max(base_a, base_b), "some lambda serves both tasks"
lam0 = sweep[sweep["lambda"] == 0]
strongest = sweep[sweep["lambda"] == sweep["lambda"].max()]
assert float(strongest["recall A"].iloc[0]) >= float(lam0["recall A"].iloc[0]), "stronger EWC keeps more of A"
assert float(strongest["recall B"].iloc[0]) <= float(lam0["recall B"].iloc[0]), "and learns less of B"

# %% [markdown]
# ## With real text
#
# The experiment takes any pair of `(queries, targets)` arrays per task (`pairs_experiment`), e.g. MiniLM
# embeddings of WordNet example sentences and their glosses; the synthetic pair above is the stand-in until the
# pipeline embeds such pairs.
