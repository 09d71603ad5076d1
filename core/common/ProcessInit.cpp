// Linked into every executable of the project (the CMake object library cytosae_process_init).
//
// LibTorch's OpenMP runtime (libgomp) lets its idle threads spin for a while before they
// sleep. On a machine shared with other work the spinning takes cores from the other
// processes and from our own reader and GUI threads (measured: 60 demo cells 35 s with two
// busy processes beside, 12 s with passive waiting; idle, passive waiting was also faster:
// 0.98 s against 1.3 s). libgomp reads OMP_WAIT_POLICY once, in its own constructor, before
// main() runs, so the default has to be set before any library is initialised: functions in
// an executable's .preinit_array run first. A value the user set is kept.

#include <cstdlib>

namespace {

void preferPassiveOpenMpWaiting(int, char **, char **)
{
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
}

} // namespace

#if defined(__linux__) && defined(__ELF__)
__attribute__((section(".preinit_array"), used)) static void (*const cytosaePreinit)(int, char **, char **) =
    &preferPassiveOpenMpWaiting;
#endif
