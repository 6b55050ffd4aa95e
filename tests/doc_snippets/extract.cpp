// Turns the C++ code blocks of a Markdown page into a translation unit, so that the test build
// compiles every example the docs and the README show and they cannot drift from the API.
//
//   extract PAGE.md OUT.cpp NAME
//
// What goes into OUT.cpp, in page order:
// - every ```cpp block (a block whose info string is `cpp skip-compile` is left out: for code
//   that is meant not to compile);
// - hidden lines, written in an HTML comment that starts with `<!-- cpp`, which a rendered page
//   does not show: the set-up an example needs (a batch class, a dataset) and the function that
//   statements must sit in.
// All of it sits in `namespace NAME { ... }`, #include lines hoisted above it, and #line
// directives make a compiler's messages point at the page.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Chunk {
  std::size_t first_line;  // 1-based line of the page where the chunk's code starts
  std::vector<std::string> lines;
};

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

std::string trim_left(const std::string& text) {
  const auto start = text.find_first_not_of(" \t");
  return start == std::string::npos ? std::string() : text.substr(start);
}

std::string quoted(const std::string& text) {
  std::string result = "\"";
  for (char c : text) result += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return result + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: extract PAGE.md OUT.cpp NAMESPACE\n";
    return 2;
  }
  const std::string page = argv[1];
  std::ifstream in(page);
  if (!in) {
    std::cerr << page << ": cannot read\n";
    return 1;
  }
  std::vector<std::string> page_lines;
  for (std::string line; std::getline(in, line);) page_lines.push_back(line);

  std::vector<Chunk> chunks;
  std::vector<std::string> includes;
  enum class In { text, code, skipped_code, hidden } state = In::text;
  std::string fence;
  for (std::size_t i = 0; i < page_lines.size(); ++i) {
    const std::string& line = page_lines[i];
    const std::string stripped = trim_left(line);
    switch (state) {
      case In::text:
        if (starts_with(stripped, "```") || starts_with(stripped, "~~~")) {
          fence = stripped.substr(0, 3);
          const std::string info = stripped.substr(3);
          if (info == "cpp" || info == "c++") {
            state = In::code;
            chunks.push_back({i + 2, {}});
          } else {
            state = In::skipped_code;
          }
        } else if (starts_with(stripped, "<!-- cpp")) {
          // Hidden code: the rest of this line, then the lines up to "-->".
          std::string rest = stripped.substr(8);
          const auto end = rest.find("-->");
          chunks.push_back({i + 1, {}});
          if (end != std::string::npos) {
            chunks.back().lines.push_back(rest.substr(0, end));
          } else {
            chunks.back().lines.push_back(rest);
            state = In::hidden;
          }
        }
        break;
      case In::code:
      case In::skipped_code:
        if (starts_with(stripped, fence)) {
          state = In::text;
        } else if (state == In::code) {
          if (starts_with(stripped, "#include")) {
            includes.push_back(stripped);
            chunks.back().lines.push_back("");  // keeps the line numbers
          } else {
            chunks.back().lines.push_back(line);
          }
        }
        break;
      case In::hidden: {
        const auto end = line.find("-->");
        chunks.back().lines.push_back(end == std::string::npos ? line : line.substr(0, end));
        if (end != std::string::npos) state = In::text;
        break;
      }
    }
  }
  if (state != In::text) {
    std::cerr << page << ": a code block or hidden comment is not closed\n";
    return 1;
  }

  std::ostringstream out;
  out << "// Generated from " << page
      << " by tests/doc_snippets/extract.cpp: edit the page, not this file.\n";
  for (const auto& include : includes) out << include << '\n';
  out << "namespace " << argv[3] << " {\n";
  for (const auto& chunk : chunks) {
    out << "#line " << chunk.first_line << ' ' << quoted(page) << '\n';
    for (const auto& line : chunk.lines) out << line << '\n';
  }
  out << "}  // namespace " << argv[3] << '\n';

  // Rewritten only when it changes, so that an edit elsewhere on the page rebuilds nothing.
  const std::string text = out.str();
  std::ifstream old(argv[2]);
  std::stringstream old_text;
  old_text << old.rdbuf();
  if (!old || old_text.str() != text) {
    std::filesystem::create_directories(std::filesystem::path(argv[2]).parent_path());
    std::ofstream(argv[2]) << text;
  }
  return 0;
}
