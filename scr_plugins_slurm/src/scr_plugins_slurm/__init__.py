"""scr plugin for Slurm: the ``slurm`` resource manager and the ``srun`` launcher.

``plugin`` registers them (cheap to import); ``rm``, ``launcher`` hold the backends,
``parse`` the pure parsers of Slurm's output, ``settings`` the ``slurm`` settings section.
"""
