#pragma once

// OpenCV's image decoders report problems by printing to std::cerr (its log warnings, and
// "imdecode_(...): can't read data: ..." when a codec fails). Those lines belong to the file
// being decoded: while a DecoderMessages object lives, what this thread prints on std::cerr
// is collected here instead of reaching the terminal. Other threads print as before.
// Internal to core/imaging.

#include <string>

namespace cytosae::imaging {

class DecoderMessages {
public:
    DecoderMessages();
    ~DecoderMessages();
    DecoderMessages(const DecoderMessages &) = delete;
    DecoderMessages &operator=(const DecoderMessages &) = delete;

    // What was printed, as one line: OpenCV's prefixes ("[ WARN:0@0.2] global ./modules/...")
    // and repeated messages removed; empty when nothing was printed.
    std::string summary() const;

private:
    std::string m_text;
    std::string *m_previous = nullptr;
};

} // namespace cytosae::imaging
