"""Jobs of many queries: atlases over every channel, unit or class, resumable, on Ray or not."""

from inverset.jobs.atlas import AtlasSummary, atlas, load_atlas

__all__ = ["AtlasSummary", "atlas", "load_atlas"]
