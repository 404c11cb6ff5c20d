// Helpers for tests that run the `tlt` command-line tool as a separate process.
//
// The including test target defines TLT_CLI_PATH (the built tool's path, through
// target_compile_definitions with $<TARGET_FILE:tlt>) and depends on the `tlt` target.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

#ifndef TLT_CLI_PATH
#error "tests/cli_test_util.h needs TLT_CLI_PATH (the path of the built tlt tool)"
#endif

namespace tlt::test_util {

// Runs `tlt <args>` through the shell and returns everything it wrote to stdout and stderr
// (stderr redirected into stdout, so glog lines come interleaved). *exit_code is the tool's exit
// status, or -1 when it could not be started or did not exit normally (killed by a signal).
// `args` goes to the shell as written: quote anything with spaces or shell characters.
inline std::string RunCli(const std::string& args, int* exit_code) {
  std::string out;
  FILE* p = popen((std::string(TLT_CLI_PATH) + " " + args + " 2>&1").c_str(), "r");
  char buf[65536];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = p ? pclose(p) : -1;
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

}  // namespace tlt::test_util
