"""snf.hooks: quota pre-hooks, event post-hooks and the job-queue event daemon
(the scripts Ganeti runs live in ganeti/<hpath>-{pre,post}.d/)."""
