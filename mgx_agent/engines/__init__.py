"""Engines: what executes a run's team, behind one interface (``base.TeamEngine``).

``native`` is ``mgx_agent.team.MGXStyleTeam`` in this process. ``metagpt`` is MetaGPT's own
Role/Action/Team running out of process, in MetaGPT's interpreter, driven over the line
protocol of ``protocol.py`` by ``out_of_process.OutOfProcessEngine``; ``metagpt_worker.py`` is
the script that runs on the other side.
"""

ENGINES = ("native", "metagpt")
