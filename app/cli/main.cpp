// cytosae: the command line of CytoSAE Explorer.

#include "Commands.h"

#include "model/Engine.h"

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
                 "  import    add a folder or CSV manifest of images to a project database\n"
                 "  run       run the ViT + SAE on a project's images and store every activation\n"
                 "            (or one shard of them: --shard I/N --shard-db FILE)\n"
                 "  merge     combine the shard databases of a sharded run into the project\n"
                 "  stats     per-latent statistics of a run and a project summary\n"
                 "  check     verify a project file and say what is damaged (never writes)\n"
                 "  top       the cells that activate a concept most (or sampled by quantile)\n"
                 "  export    CSV of image-level activations, per-latent statistics or images\n"
                 "  labels    concept labels: list, set, export/import (JSON, CSV), annotation tasks\n"
                 "  analyze   patient fingerprints, patient- and disease-specific concepts, similarity,\n"
                 "            cross-validated diagnosis from concepts (CSV + JSON)\n"
                 "  demo      create the demo project (synthetic cohort + demo model) and run it\n"
                 "  demo-smear  write generated smear fields with known white-cell positions\n"
                 "  train-sae train a sparse autoencoder on a project's images (CytoSAE recipe)\n"
                 "  train-vit train a small DINOv2-style ViT on a project's labelled cells\n"
                 "  build-demo-models  rebuild the bundled demo model from scratch\n"
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
        std::printf("cytosae %s\n%s\n", CYTOSAE_VERSION, cytosae::model::runtimeSummary().c_str());
        return 0;
    }
    using namespace cytosae::cli;
    if (cmd == "embed")
        return embedCommand(argc, argv);
    if (cmd == "import")
        return importCommand(argc, argv);
    if (cmd == "run")
        return runCommand(argc, argv);
    if (cmd == "merge")
        return mergeCommand(argc, argv);
    if (cmd == "stats")
        return statsCommand(argc, argv);
    if (cmd == "check")
        return checkCommand(argc, argv);
    if (cmd == "top")
        return topCommand(argc, argv);
    if (cmd == "export")
        return exportCommand(argc, argv);
    if (cmd == "labels")
        return labelsCommand(argc, argv);
    if (cmd == "analyze")
        return analyzeCommand(argc, argv);
    if (cmd == "demo-smear")
        return demoSmearCommand(argc, argv);
    if (cmd == "demo")
        return demoCommand(argc, argv);
    if (cmd == "train-sae")
        return trainSaeCommand(argc, argv);
    if (cmd == "train-vit")
        return trainVitCommand(argc, argv);
    if (cmd == "build-demo-models")
        return buildDemoModelsCommand(argc, argv);
    std::fprintf(stderr, "cytosae: unknown command '%s'\n\n", cmd.c_str());
    usage(stderr);
    return 2;
}
