-- The exit statuses of `alipay`, in one place: the dispatcher (alipay.cli)
-- and the commands (alipay.cli.common) return the same numbers.
return {
  OK = 0,     -- done
  FAILED = 1, -- the command ran and failed (the error is printed)
  USAGE = 2,  -- the command line is wrong (a pointer to --help is printed)
  -- A command a signal stopped (`alipay campaign run` after Ctrl-C or
  -- systemd's SIGTERM, the campaign left resumable): 128 + the signal's
  -- number, as a shell reports a process the signal ended.
  SIGNALLED = { INT = 130, TERM = 143 },
}
