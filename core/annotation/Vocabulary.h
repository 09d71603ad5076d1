#pragma once

// The controlled vocabulary of hematology morphology terms offered when labelling a concept
// (free text stays allowed). Terms follow the ICSH recommendations for peripheral blood and
// marrow morphology and the cell classes of the public single-cell data sets.

#include <string>
#include <vector>

namespace cytosae::annotation {

struct VocabularyTerm {
    std::string term;
    std::string category; // cell type, nucleus, cytoplasm, inclusion, artefact, background
};

const std::vector<VocabularyTerm> &morphologyVocabulary();
// True when the label is one of the vocabulary's terms (case-insensitive).
bool isVocabularyTerm(const std::string &label);

} // namespace cytosae::annotation
