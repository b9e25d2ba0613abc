"""snf.common: configuration, the error tree, logging set-up and the Ganeti RAPI client.

Leaf modules only: nothing here imports another snf package."""
