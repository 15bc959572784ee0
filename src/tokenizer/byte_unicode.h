#pragma once
// GPT-2's reversible byte <-> code point table. Byte-level BPE vocabularies spell every token in
// this alphabet so that no token contains whitespace or control characters: printable bytes
// ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for themselves and the other 68 bytes are moved, in
// byte order, to U+0100..U+0143 (so the space 0x20 is written 'Ġ' U+0120).
#include <cstdint>
#include <string>
#include <string_view>

namespace moe::tokenizer {

uint32_t byte_to_codepoint(uint8_t byte);
// The code point of `byte` as UTF-8 (1 or 2 bytes).
std::string_view byte_to_utf8(uint8_t byte);
// The byte a code point stands for, or -1 if it is not in the table.
int codepoint_to_byte(uint32_t codepoint);

// Appends `raw` with every byte replaced by its code point.
void append_byte_encoded(std::string& out, std::string_view raw);

// Appends the bytes that the code points of `encoded` stand for. Code points outside the table
// (and invalid UTF-8) are copied through unchanged; returns false if there were any.
bool append_byte_decoded(std::string& out, std::string_view encoded);

}  // namespace moe::tokenizer
