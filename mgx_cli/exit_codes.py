"""The exit statuses of ``mgx`` (README "Driving the service from a terminal" lists them)."""

OK = 0
# `runs watch` / `runs start --watch`: the run ended, but not completed (failed, cancelled,
# rejected, expired).
RUN_NOT_COMPLETED = 1
# A wrong command line (click's own status for usage errors).
USAGE = 2
# The service answered with an error (its problem+json title and detail are printed).
SERVICE_ERROR = 3
# The service could not be reached, or stopped answering.
UNREACHABLE = 4
# The run waits for approval and nobody can answer here (no terminal input, no --yes).
AWAITING_APPROVAL = 5
# Interrupted with Ctrl+C.
INTERRUPTED = 130
