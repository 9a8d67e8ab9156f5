"""The demos: the loop's stories told end to end on the local stack (`tandem demo`).

`loop` is the whole loop (`make demo`), `distill` the flywheel's second half
(`make demo-distill`). They sit above every other part of the package, which they drive
as a user would, and nothing in the package imports them but the command line.
"""
