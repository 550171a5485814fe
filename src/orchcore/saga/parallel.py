"""Running a parallel step's branches side by side within one drive.

Each branch runs its steps in order while the workflow goes forward. A branch stops
when it is done, when its next step ended badly, or when that step waits for a retry:
a wait is never slept through here (holding the lease for nothing); once every branch
has stopped, the planner turns the earliest retry into the workflow's wait, the lease
goes back, and whichever daemon claims the workflow when it is due carries on.

A branch whose commit applies operators' queued actions (a pause, a compensation)
looks again before its next attempt; calls already in flight in other branches end
normally, so what they did is known and recorded.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from orchcore.saga import forward, planner
from orchcore.saga.state import StepState
from orchcore.saga.status import StepStatus

if TYPE_CHECKING:
    from orchcore.callpath.caller import ServiceCaller
    from orchcore.saga.drive import Drive


async def run_parallel(drive: Drive, parallel: StepState, caller: ServiceCaller) -> None:
    state = drive.state
    now = drive.clock.now()
    if parallel.status != StepStatus.RUNNING:
        forward.start_parallel(state, parallel, now, drive.actor)
    fronts = [
        front
        for front in planner.branch_fronts(state, parallel).values()
        if front is not None and planner.branch_due(front, now)
    ]
    # The branches' first attempts start in one commit, so their calls go out together.
    undos = [forward.start_attempt(state, front, now, drive.actor) for front in fronts]

    def undo_all() -> None:
        for undo in reversed(undos):
            undo()

    if not await drive.commit(release=False, undo=undo_all):
        return  # operators' queued actions came first: plan again
    async with asyncio.TaskGroup() as group:
        for front in fronts:
            group.create_task(_run_branch(drive, parallel, front, caller))


async def _run_branch(
    drive: Drive, parallel: StepState, started: StepState, caller: ServiceCaller
) -> None:
    await drive.call_started(caller, started)
    branch = started.branch
    assert branch is not None
    while drive.going_forward_in(parallel):
        front = planner.branch_fronts(drive.state, parallel)[branch]
        if front is None or not planner.branch_due(front, drive.clock.now()):
            break
        await drive.attempt_forward(caller, front)
    # What the branch came to is recorded now, while other branches may still be out:
    # watchers see it, and a daemon dying meanwhile does not lose it.
    if drive.state.has_changes():
        await drive.commit(release=False)
