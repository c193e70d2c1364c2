"""Workflows: chain, group and chord, built on one parent/child model.

The package owns the canvas (`task.s()` / `task.si()` signatures, `chain`, `group`,
`chord`), turning one into a workflow record — a tree of nodes in one hash under the
workflow's own hash tag (`NS:{wf:ID}:workflow`, so on Redis Cluster each step on it is one
slot) — sending its first children, the `Recorder` a worker uses to record a child's final
outcome and send what that releases, and `WorkflowHandle` (status, results, cancel). It
never runs a handler and never decides an outcome (the worker's execution does); the tree
walks that release nodes are in workflow_record.lua, atomic on the workflow's slot.

A child is an ordinary message on its task's queue, whose headers name its workflow and
node. Only its final outcome reaches the workflow — done, or dead-lettered or cancelled
("failed") — never a retry.

Why nothing is lost or doubled. A worker finishing a child (1) records the outcome in the
workflow, which atomically releases the nodes it unblocks and remembers them, (2) sends each
released node under an idempotency key of its own (`wf:ID:NODE` in its queue's slot), then
(3) acknowledges the child's entry. A worker that dies before (3) leaves the entry pending:
another worker claims it and runs it again; its (1) finds the outcome recorded and changes
nothing but returns the same releases, and its (2) sends only those the first worker had not
sent (the keys hold the others). A release happens only inside (1), so of any number of
children finishing at once exactly one releases the next node, and each node is sent once.

- nodes.py: the kinds, final states and errors, `Child` (a task node as the record keeps it);
- canvas.py: the canvas and sending a workflow (its record and first children, `Sender`);
- recorder.py: a worker's side (`Step`, `Recorder`);
- handle.py: reading and acting on one (`WorkflowStatus`, `WorkflowHandle`).
"""
