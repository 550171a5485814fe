"""orchtui: the Textual console of orch (`orch console`).

The console is a face over :class:`orchcore.Orch`: every pane asks the engine for a
snapshot and renders it; every action calls the engine. See :mod:`orchtui.pane` for
how a pane plugs in and :mod:`orchtui.panes` for the registry of top-level panes.
"""
