# libtest's JSON events (one per line, mixed with plain lines from the tests) as readable text.
(try fromjson catch null) as $e
| if $e == null or ($e | type) != "object" then .
  elif $e.type == "suite" and $e.event == "started" then "running \($e.test_count) tests"
  elif $e.type == "suite" then
    "test result: \($e.event). \($e.passed) passed; \($e.failed) failed; \($e.ignored) ignored; finished in \($e.exec_time)s"
  elif $e.type != "test" or $e.event == "started" then empty
  elif $e.event == "timeout" then "test \($e.name) has been running for over 60 seconds"
  elif $e.event == "failed" then
    "test \($e.name) ... FAILED <\($e.exec_time // "?")s>\n---- \($e.name) output ----\n\($e.stdout // "")"
  else "test \($e.name) ... \($e.event) <\($e.exec_time // "?")s>"
  end
