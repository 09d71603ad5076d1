#include "annotation/Vocabulary.h"

#include <algorithm>
#include <cctype>

namespace cytosae::annotation {

const std::vector<VocabularyTerm> &morphologyVocabulary()
{
    static const std::vector<VocabularyTerm> terms = {
        // cell types
        {"segmented neutrophil", "cell type"}, {"band neutrophil", "cell type"}, {"metamyelocyte", "cell type"},
        {"myelocyte", "cell type"}, {"promyelocyte", "cell type"}, {"atypical promyelocyte", "cell type"},
        {"myeloblast", "cell type"}, {"monoblast", "cell type"}, {"promonocyte", "cell type"},
        {"monocyte", "cell type"}, {"lymphocyte", "cell type"}, {"reactive lymphocyte", "cell type"},
        {"large granular lymphocyte", "cell type"}, {"plasma cell", "cell type"}, {"eosinophil", "cell type"},
        {"basophil", "cell type"}, {"erythroblast", "cell type"}, {"proerythroblast", "cell type"},
        {"megakaryocyte", "cell type"}, {"smudge cell", "cell type"}, {"faggot cell", "cell type"},
        // nucleus
        {"nucleus", "nucleus"}, {"lobulated nucleus", "nucleus"}, {"hypersegmented nucleus", "nucleus"},
        {"hyposegmented nucleus (pseudo-Pelger)", "nucleus"}, {"kidney-shaped nucleus", "nucleus"},
        {"cup-like nucleus", "nucleus"}, {"fine chromatin", "nucleus"}, {"coarse chromatin", "nucleus"},
        {"nucleolus", "nucleus"}, {"nuclear membrane", "nucleus"}, {"binucleation", "nucleus"},
        // cytoplasm
        {"cytoplasm", "cytoplasm"}, {"basophilic cytoplasm", "cytoplasm"}, {"grey-blue cytoplasm", "cytoplasm"},
        {"perinuclear halo (Golgi zone)", "cytoplasm"}, {"hypogranular cytoplasm", "cytoplasm"},
        {"vacuolation", "cytoplasm"}, {"cytoplasmic blebs", "cytoplasm"},
        // inclusions and granules
        {"fine granules", "granules"}, {"coarse azurophilic granules", "granules"},
        {"eosinophilic granules", "granules"}, {"basophilic granules", "granules"}, {"toxic granulation", "granules"},
        {"Auer rod", "inclusion"}, {"multiple Auer rods (faggot)", "inclusion"}, {"Döhle body", "inclusion"},
        {"Howell-Jolly body", "inclusion"}, {"Chediak-Higashi granules", "inclusion"},
        // surroundings and artefacts
        {"cell border", "cell outline"}, {"red blood cell", "background"}, {"platelet", "background"},
        {"background", "background"}, {"staining artefact", "artefact"}, {"focus blur", "artefact"},
        {"overlapping cells", "artefact"}, {"crush artefact", "artefact"},
    };
    return terms;
}

bool isVocabularyTerm(const std::string &label)
{
    auto lower = [](std::string s) {
        std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
        return s;
    };
    const std::string l = lower(label);
    const auto &terms = morphologyVocabulary();
    return std::any_of(terms.begin(), terms.end(), [&](const VocabularyTerm &t) { return lower(t.term) == l; });
}

} // namespace cytosae::annotation
