"""The workflows feature: chain, group and chord on one parent/child model."""
