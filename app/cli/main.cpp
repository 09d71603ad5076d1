// cytosae: the command line of CytoSAE Explorer.

#include "Commands.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace {

void usage(FILE *out)
{
    std::fprintf(out,
                 "Usage: cytosae <command> [options]\n"
                 "\n"
                 "Commands:\n"
                 "  embed     run the ViT + SAE on images; print concepts, write JSON / .npy\n"
                 "\n"
                 "Run 'cytosae <command> --help' for the options of a command.\n"
                 "Options: --help, --version\n");
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const std::string cmd = argv[1];
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
        usage(stdout);
        return 0;
    }
    if (cmd == "--version") {
        std::printf("cytosae %s\n", CYTOSAE_VERSION);
        return 0;
    }
    if (cmd == "embed")
        return cytosae::cli::embedCommand(argc, argv);
    std::fprintf(stderr, "cytosae: unknown command '%s'\n\n", cmd.c_str());
    usage(stderr);
    return 2;
}
