#include "analysis/CohortClassifier.h"

#include <cmath>

#include <algorithm>
#include <cctype>

namespace cytosae::analysis {

namespace {

std::string lower(std::string s)
{
    for (char &c : s)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

const std::string kDisease = "disease";

} // namespace

std::string detectControl(const Cohort &cohort)
{
    std::vector<std::string> found;
    for (const auto &p : cohort.patients) {
        const std::string l = lower(p.diagnosis);
        if (l.find("control") != std::string::npos || l.find("healthy") != std::string::npos ||
            l == "normal")
            found.push_back(p.diagnosis);
    }
    std::sort(found.begin(), found.end());
    return found.empty() ? std::string() : found.front();
}

const char *conceptFeaturesName(ConceptFeatures f)
{
    switch (f) {
    case ConceptFeatures::Presence: return "presence";
    case ConceptFeatures::Strength: return "strength";
    case ConceptFeatures::Both: return "both";
    case ConceptFeatures::ClsToken: return "cls-token";
    case ConceptFeatures::All: return "all";
    }
    return "presence";
}

bool parseConceptFeatures(const std::string &text, ConceptFeatures &out)
{
    for (ConceptFeatures f : {ConceptFeatures::Presence, ConceptFeatures::Strength, ConceptFeatures::Both,
                              ConceptFeatures::ClsToken, ConceptFeatures::All})
        if (text == conceptFeaturesName(f)) {
            out = f;
            return true;
        }
    return false;
}

Dataset conceptDataset(const Cohort &cohort, const std::string &binaryControl, std::vector<size_t> *patientIndex,
                       ConceptFeatures features)
{
    const bool all = features == ConceptFeatures::All;
    bool presence = all || features == ConceptFeatures::Presence || features == ConceptFeatures::Both;
    bool strength = all || features == ConceptFeatures::Strength || features == ConceptFeatures::Both;
    bool clsToken = all || features == ConceptFeatures::ClsToken;
    if (cohort.strength.size() != cohort.activeCells.size())
        strength = false; // a cohort from counts has no strengths
    if (cohort.clsToken.size() != cohort.activeCells.size())
        clsToken = false;
    if (!strength && !clsToken)
        presence = true;
    Dataset d;
    d.p = cohort.dSae * (int(presence) + int(strength) + int(clsToken));
    if (!binaryControl.empty()) {
        d.classNames = {binaryControl, kDisease};
    } else {
        for (const auto &p : cohort.patients)
            if (!p.diagnosis.empty() &&
                std::find(d.classNames.begin(), d.classNames.end(), p.diagnosis) == d.classNames.end())
                d.classNames.push_back(p.diagnosis);
        std::sort(d.classNames.begin(), d.classNames.end());
    }
    for (size_t i = 0; i < cohort.size(); ++i) {
        const std::string &dx = cohort.patients[i].diagnosis;
        if (dx.empty())
            continue;
        int cls = 0;
        if (!binaryControl.empty())
            cls = dx == binaryControl ? 0 : 1;
        else
            cls = int(std::find(d.classNames.begin(), d.classNames.end(), dx) - d.classNames.begin());
        d.y.push_back(cls);
        d.rowNames.push_back(cohort.patients[i].code);
        // Presence as asin(sqrt(fraction)): the variance-stabilising transform of a binomial
        // proportion, so a concept in few cells is not drowned by the noise of common ones.
        if (presence)
            for (int32_t k = 0; k < cohort.dSae; ++k)
                d.x.push_back(float(std::asin(std::sqrt(cohort.fraction(i, k)))));
        if (strength)
            d.x.insert(d.x.end(), cohort.strength.begin() + long(i * size_t(cohort.dSae)),
                       cohort.strength.begin() + long((i + 1) * size_t(cohort.dSae)));
        if (clsToken)
            d.x.insert(d.x.end(), cohort.clsToken.begin() + long(i * size_t(cohort.dSae)),
                       cohort.clsToken.begin() + long((i + 1) * size_t(cohort.dSae)));
        if (patientIndex)
            patientIndex->push_back(i);
    }
    d.n = int(d.y.size());
    return d;
}

Result<CohortClassification> classifyCohort(store::ProjectDb *db, const store::RunRecord &run, const Cohort &cohort,
                                            const CohortClassifyOptions &options)
{
    // The CLS token's concepts are read only when asked for (one more pass over the cells).
    const bool needsClsToken =
        options.features == ConceptFeatures::ClsToken || options.features == ConceptFeatures::All;
    if (needsClsToken && cohort.clsToken.empty() && db) {
        Cohort withClsToken = cohort;
        if (Status s = addClsTokenConcepts(*db, run, withClsToken); !s)
            return s.error();
        return classifyCohort(db, run, withClsToken, options);
    }

    CohortClassification out;
    std::optional<std::vector<std::vector<float>>> cls;
    std::string clsNote;
    if (db && options.embeddingBaseline) {
        auto loaded = patientMeanCls(*db, run, cohort);
        if (!loaded)
            clsNote = "no embedding baseline: " + loaded.message();
        else
            cls = std::move(loaded.value());
    } else {
        clsNote = "embedding baseline not requested";
    }
    std::vector<std::string> controls = {std::string()};
    std::string control = options.control;
    if (control.empty())
        control = detectControl(cohort);
    if (control == "none")
        control.clear();
    if (!control.empty()) {
        bool present = false;
        for (const auto &p : cohort.patients)
            present = present || p.diagnosis == control;
        if (!present)
            out.notes.push_back("no patient has the control diagnosis '" + control + "': no control vs disease task");
        else
            controls.push_back(control);
    }
    for (const std::string &binary : controls) {
        std::vector<size_t> index;
        const Dataset data = conceptDataset(cohort, binary, &index, options.features);
        if (binary.empty() && data.classNames.size() == 2 && controls.size() == 2)
            continue; // the same task twice
        ClassificationTask task;
        task.name = binary.empty() ? "diagnosis" : binary + " vs " + kDisease;
        auto cv = crossValidate(data, options.classifier);
        if (!cv) {
            out.notes.push_back(task.name + ": " + cv.message());
            continue;
        }
        task.concepts = std::move(cv.value());
        // Baseline on the same rows, same classes, same seed (hence the same folds).
        if (cls) {
            Dataset e;
            e.classNames = data.classNames;
            bool complete = true;
            for (int r = 0; r < data.n; ++r) {
                const auto &v = (*cls)[index[size_t(r)]];
                if (v.empty() || (e.p && int(v.size()) != e.p)) {
                    complete = false;
                    break;
                }
                e.p = int(v.size());
                e.x.insert(e.x.end(), v.begin(), v.end());
                e.y.push_back(data.y[size_t(r)]);
            }
            e.n = int(e.y.size());
            if (!complete) {
                task.embeddingNote = "no embedding baseline: some patients have no CLS embeddings in this run";
            } else {
                auto ecv = crossValidate(e, options.classifier);
                if (ecv)
                    task.embedding = std::move(ecv.value());
                else
                    task.embeddingNote = "embedding baseline: " + ecv.message();
            }
        } else {
            task.embeddingNote = clsNote;
        }
        task.drivers.resize(task.concepts.classNames.size());
        for (size_t c = 0; c < task.concepts.classNames.size(); ++c) {
            for (const FeatureWeight &f : task.concepts.topFeatures[c]) {
                ConceptDriver driver;
                driver.latent = int32_t(f.feature % cohort.dSae); // both: [presence | strength]
                const bool seen = std::any_of(task.drivers[c].begin(), task.drivers[c].end(),
                                              [&](const ConceptDriver &o) { return o.latent == driver.latent; });
                if (seen)
                    continue;
                driver.weight = f.weight;
                if (db && options.cellsPerConcept > 0) {
                    store::CellFilter filter;
                    if (task.concepts.classNames[c] != kDisease || binary.empty())
                        filter.diagnosis = task.concepts.classNames[c];
                    auto hits = db->topCells(run.id, driver.latent, options.cellsPerConcept, filter);
                    if (hits)
                        driver.cells = std::move(hits.value());
                }
                task.drivers[c].push_back(std::move(driver));
            }
        }
        out.tasks.push_back(std::move(task));
    }
    if (out.tasks.empty())
        return Error(out.notes.empty() ? std::string("nothing to classify") : out.notes.back());
    return out;
}

} // namespace cytosae::analysis
