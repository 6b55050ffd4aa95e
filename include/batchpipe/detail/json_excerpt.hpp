#pragma once
// JSON values in error messages and the nesting a config may have. A value that reached an
// error may be anything a user's file held: dump() walks all of it, recursively, so a deeply
// nested value overflows the stack and a large one floods the message. An excerpt walks only as
// far as the characters it shows.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace batchpipe::detail {

/// `value` as JSON text; bytes that are not UTF-8 (a string cut inside a character, say) become
/// U+FFFD instead of an exception.
inline std::string json_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// At most about `limit` characters of `value` as JSON text, "..." where it is cut (never inside
/// a UTF-8 character).
inline std::string json_excerpt(const nlohmann::json& value, std::size_t limit = 60) {
  std::string out;
  // Each level adds at least one character, so the recursion is no deeper than `limit`.
  const auto append = [&](const auto& self, const nlohmann::json& v) -> void {
    if (out.size() >= limit) return;
    if (v.is_array() || v.is_object()) {
      out += v.is_array() ? '[' : '{';
      bool first = true;
      for (auto item = v.begin(); item != v.end() && out.size() < limit; ++item, first = false) {
        if (!first) out += ',';
        if (v.is_object()) out += json_text(item.key()) + ':';
        self(self, item.value());
      }
      out += v.is_array() ? ']' : '}';
    } else if (v.is_string()) {
      out += json_text(v.get_ref<const std::string&>().substr(0, limit));
    } else {
      out += json_text(v);
    }
  };
  append(append, value);
  if (out.size() > limit) {
    std::size_t cut = limit > 3 ? limit - 3 : 0;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xc0) == 0x80) --cut;  // a continuation byte
    out = out.substr(0, cut) + "...";
  }
  return out;
}

/// How deeply `value` nests (a scalar: 0, `[]`: 1, `[[1]]`: 2), counted without recursion and
/// stopping once past `limit`.
inline std::size_t json_nesting(const nlohmann::json& value, std::size_t limit) {
  std::size_t deepest = 0;
  std::vector<std::pair<const nlohmann::json*, std::size_t>> pending{{&value, 0}};
  while (!pending.empty() && deepest <= limit) {
    const auto [node, depth] = pending.back();
    pending.pop_back();
    if (!node->is_array() && !node->is_object()) continue;
    if (depth + 1 > deepest) deepest = depth + 1;
    for (const auto& child : *node) pending.emplace_back(&child, depth + 1);
  }
  return deepest;
}

}  // namespace batchpipe::detail
