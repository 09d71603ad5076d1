#pragma once

// A small project for GUI tests: synthetic demo cells imported from the generator's manifest
// and, when asked, run through the tiny fixture models.

#include "demo/DemoCohort.h"
#include "pipeline/Importer.h"
#include "pipeline/Runner.h"
#include "store/ProjectDb.h"

#include <QString>
#include <QtGlobal>

inline QString makeDemoProject(const QString &dir, int perGroup, int cells, bool run)
{
    using namespace cytosae;
    const QString fixtures = QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/");
    const QString cohort = dir + "/cohort";
    auto written = demo::writeDemoCohort(cohort.toStdString(), demo::demoCohort(perGroup, cells, 5), {});
    if (!written)
        qFatal("%s", written.message().c_str());
    const QString project = dir + "/p.cyto";
    auto db = store::ProjectDb::open(project.toStdString(), store::ProjectDb::OpenMode::Create);
    pipeline::ImportOptions io;
    io.source = (cohort + "/manifest.csv").toStdString();
    io.patientTable = (cohort + "/patients.csv").toStdString();
    if (!db || !pipeline::importImages(*db, io))
        qFatal("import failed");
    if (run) {
        pipeline::RunOptions ro;
        ro.engine.vitPath = (fixtures + "tiny_dinobloom.pth").toStdString();
        ro.engine.saePath = (fixtures + "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt").toStdString();
        ro.engine.device = model::DeviceChoice::Cpu;
        auto r = pipeline::runProject(project.toStdString(), ro);
        if (!r)
            qFatal("%s", r.message().c_str());
    }
    return project;
}
