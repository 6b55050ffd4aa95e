// Readers and writers: round trips, and truncated or corrupt files of each format.
#include "support.hpp"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#include <zlib.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

namespace fs = std::filesystem;

namespace {

using test::Scratch;

std::string bytes_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const fs::path& file, const std::string& bytes) {
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
}

void truncate_to(const fs::path& file, std::size_t size) {
  write_bytes(file, bytes_of(file).substr(0, size));
}

}  // namespace

TEST_CASE("IDX files round-trip, plain and gzip", "[io][idx]") {
  Scratch scratch;
  const std::vector<at::Tensor> samples{torch::randint(0, 255, {5, 7, 3}).to(torch::kByte),
                                        torch::randn({4, 6}), torch::randn({3}).to(torch::kDouble),
                                        torch::randint(-5000, 5000, {8}).to(torch::kShort),
                                        torch::randint(-70000, 70000, {2, 2}).to(torch::kInt)};
  for (const auto& tensor : samples) {
    for (std::string name : {"data.idx", "data.idx.gz"}) {
      CAPTURE(name, tensor.scalar_type());
      bp::io::write_idx(scratch / name, tensor);
      const auto back = bp::io::read_idx(scratch / name);
      CHECK(back.scalar_type() == tensor.scalar_type());
      CHECK(torch::equal(back, tensor));
    }
  }
  CHECK(bytes_of(scratch / "data.idx.gz").substr(0, 2) == "\x1f\x8b");  // really gzip
}

TEST_CASE("bad IDX files fail with the file and the reason", "[io][idx]") {
  Scratch scratch;
  const auto file = scratch / "images.idx";
  bp::io::write_idx(file, torch::zeros({10, 4, 4}, torch::kByte));
  const std::string good = bytes_of(file);

  CHECK_THROWS_WITH(bp::io::read_idx(scratch / "missing.idx"), test::contains("missing.idx: no such file"));
  truncate_to(file, good.size() - 5);
  CHECK_THROWS_WITH(
      bp::io::read_idx(file),
      test::contains("images.idx: truncated: shape [10, 4, 4] needs 160 bytes of data, the file has 155"));
  truncate_to(file, 6);
  CHECK_THROWS_WITH(bp::io::read_idx(file), test::contains("truncated: the header announces 3 dimensions"));
  write_bytes(file, "PK\x03\x04rest of a zip file");
  CHECK_THROWS_WITH(bp::io::read_idx(file), test::contains("bad magic number"));
  write_bytes(file, std::string("\0\0\x42\x01\0\0\0\x01x", 9));
  CHECK_THROWS_WITH(bp::io::read_idx(file), test::contains("unknown IDX type code"));
  write_bytes(file, good + "extra");
  CHECK_THROWS_WITH(bp::io::read_idx(file), test::contains("longer than its header says"));
  // A gzip file cut short: zlib reports the data it could decompress, the reader the shortfall.
  bp::io::write_idx(scratch / "images.idx.gz", torch::randint(0, 255, {100, 28, 28}).to(torch::kByte));
  truncate_to(scratch / "images.idx.gz", bytes_of(scratch / "images.idx.gz").size() / 2);
  CHECK_THROWS_WITH(bp::io::read_idx(scratch / "images.idx.gz"), test::contains("images.idx.gz: truncated"));
  CHECK_THROWS_WITH(bp::io::write_idx(scratch / "x.idx", torch::zeros({2}, torch::kLong)),
                    test::contains("IDX cannot hold dtype Long"));
}

TEST_CASE("a gzip-compressed IDX file is read whatever its name", "[io][idx]") {
  Scratch scratch;
  // Told apart by its first bytes: by its name, it was taken for a plain file, and its
  // compressed size for a truncated one.
  const auto data = torch::zeros({100, 28, 28}, torch::kByte);
  bp::io::write_idx(scratch / "images.idx.gz", data);
  write_bytes(scratch / "images-idx3-ubyte", bytes_of(scratch / "images.idx.gz"));
  CHECK(torch::equal(bp::io::read_idx(scratch / "images-idx3-ubyte"), data));
  // And a plain file named .gz is read as plain.
  bp::io::write_idx(scratch / "plain.idx", data);
  write_bytes(scratch / "plain.idx.gz", bytes_of(scratch / "plain.idx"));
  CHECK(torch::equal(bp::io::read_idx(scratch / "plain.idx.gz"), data));
}

TEST_CASE("the Fashion-MNIST files read with their real shapes", "[io][idx]") {
  const fs::path folder = "/usr/share/datasets/fashion-mnist";
  const auto labels = bp::io::read_idx(folder / "t10k-labels-idx1-ubyte.gz");
  CHECK(labels.sizes() == std::vector<int64_t>{10000});
  CHECK(labels.max().item<int>() == 9);
  CHECK(bp::io::read_idx(folder / "t10k-images-idx3-ubyte.gz").sizes() ==
        std::vector<int64_t>{10000, 28, 28});
}

TEST_CASE(".npy files round-trip in every supported dtype", "[io][npy]") {
  Scratch scratch;
  for (auto dtype : {torch::kBool, torch::kByte, torch::kChar, torch::kShort, torch::kInt, torch::kLong,
                     torch::kHalf, torch::kFloat, torch::kDouble}) {
    CAPTURE(dtype);
    const auto tensor = (torch::randn({3, 4, 5}) * 10).to(dtype);
    bp::io::write_npy(scratch / "a.npy", tensor);
    CHECK(bytes_of(scratch / "a.npy").size() % 64 ==
          static_cast<std::size_t>(3 * 4 * 5 * tensor.element_size()) % 64);  // data 64-aligned
    const auto back = bp::io::read_npy(scratch / "a.npy");
    CHECK(back.scalar_type() == dtype);
    CHECK(torch::equal(back, tensor));
  }
  bp::io::write_npy(scratch / "vector.npy", torch::arange(5));
  CHECK(bytes_of(scratch / "vector.npy").find("'shape': (5,)") != std::string::npos);
  bp::io::write_npy(scratch / "scalar.npy", torch::tensor(3.5));
  CHECK(bp::io::read_npy(scratch / "scalar.npy").item<double>() == 3.5);
}

TEST_CASE(".npy files from NumPy: Fortran order and version 2 headers", "[io][npy]") {
  Scratch scratch;
  // Bytes as numpy.save writes np.asfortranarray(np.arange(6, dtype='<i4').reshape(2, 3)) in format 2.0.
  std::string header = "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }";
  header.append(64 - (12 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string file = std::string("\x93NUMPY\x02\x00", 8);
  const auto size = static_cast<uint32_t>(header.size());
  file.append(reinterpret_cast<const char*>(&size), 4);
  file += header;
  for (int32_t value : {0, 3, 1, 4, 2, 5})
    file.append(reinterpret_cast<const char*>(&value), 4);  // column by column
  write_bytes(scratch / "f.npy", file);
  CHECK(torch::equal(bp::io::read_npy(scratch / "f.npy"), torch::arange(6, torch::kInt).reshape({2, 3})));
}

TEST_CASE("bad .npy files fail with the file and the reason", "[io][npy]") {
  Scratch scratch;
  const auto file = scratch / "x.npy";
  bp::io::write_npy(file, torch::ones({4, 4}));
  const auto good = bytes_of(file);
  truncate_to(file, good.size() - 4);
  CHECK_THROWS_WITH(
      bp::io::read_npy(file),
      test::contains("x.npy: truncated: shape [4, 4] of <f4 needs 64 bytes of data, the file has 60"));
  write_bytes(file, good.substr(0, 20));
  CHECK_THROWS_WITH(bp::io::read_npy(file), test::contains("truncated header"));
  write_bytes(file, "\x89PNG\r\n\x1a\n and so on");
  CHECK_THROWS_WITH(bp::io::read_npy(file), test::contains("bad magic number: not a .npy file"));
  auto complex = good;
  complex.replace(complex.find("<f4"), 3, "<c8");
  write_bytes(file, complex);
  CHECK_THROWS_WITH(bp::io::read_npy(file), test::contains("unsupported dtype <c8"));
  write_bytes(file, good + "x");
  CHECK_THROWS_WITH(bp::io::read_npy(file), test::contains("longer than its header says"));
  CHECK_THROWS_WITH(bp::io::read_npy(scratch / "nope.npy"), test::contains("nope.npy: no such file"));
}

namespace {

/// A version 1.0 .npy file with `header` as its dictionary and `data` after it.
std::string npy_bytes(std::string header, const std::string& data = "") {
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string file = std::string("\x93NUMPY\x01\x00", 8);
  file += static_cast<char>(header.size() & 0xFF);
  file += static_cast<char>(header.size() >> 8);
  return file + header + data;
}

}  // namespace

TEST_CASE("readers check sizes from the file before they allocate", "[io][npy][idx]") {
  Scratch scratch;
  const auto npy = scratch / "x.npy";
  // 12 bytes that announce a 4 GB header (format 2.0): an error, not a 4 GB allocation.
  write_bytes(npy, std::string("\x93NUMPY\x02\x00\xFF\xFF\xFF\xFF", 12));
  CHECK_THROWS_WITH(
      bp::io::read_npy(npy),
      test::contains("x.npy: truncated header: it announces 4294967295 bytes, the file has 12"));
  // Shapes whose size overflows, or exceeds what the file holds, name the file.
  write_bytes(npy,
              npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }"));
  CHECK_THROWS_WITH(bp::io::read_npy(npy),
                    test::contains("x.npy: shape [4611686018427387904, 8] is too large for a tensor"));
  // An empty shape is no excuse: the strides of the other sizes must fit too (found by fuzzing).
  write_bytes(npy, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4611686018427387904, "
                             "4611686018427387904), }"));
  CHECK_THROWS_WITH(bp::io::read_npy(npy), test::contains("is too large for a tensor"));
  write_bytes(npy,
              npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000,), }", "12345678"));
  CHECK_THROWS_WITH(
      bp::io::read_npy(npy),
      test::contains("x.npy: truncated: shape [1000000000] of <f8 needs 8000000000 bytes of data, "
                     "the file has 8"));
  // Headers that do not say what they must.
  write_bytes(npy, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2abc,), }"));
  CHECK_THROWS_WITH(bp::io::read_npy(npy),
                    test::contains("x.npy: malformed shape (2abc,): '2abc' is not a size"));
  write_bytes(npy, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }"));
  CHECK_THROWS_WITH(bp::io::read_npy(npy), test::contains("'-2' is not a size"));
  write_bytes(npy, npy_bytes("{'descr': '<f4', 'fortran_order': maybe, 'shape': (1,), }", "abcd"));
  CHECK_THROWS_WITH(bp::io::read_npy(npy), test::contains("fortran_order is maybe, not True or False"));

  const auto idx = scratch / "x.idx";
  // Three dimensions of 2^32 - 1 bytes each, in a 16-byte file.
  write_bytes(idx, std::string("\0\0\x08\x03\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 16));
  CHECK_THROWS_WITH(bp::io::read_idx(idx),
                    test::contains("x.idx: shape [4294967295, 4294967295, 4294967295] is too large for a "
                                   "tensor: its sizes multiply past 2^63 bytes"));
  write_bytes(idx, std::string("\0\0\x08\x04\0\0\0\0\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 20));
  CHECK_THROWS_WITH(bp::io::read_idx(idx),
                    test::contains("[0, 4294967295, 4294967295, 4294967295] is too large"));
  write_bytes(idx, std::string("\0\0\x08\x01\x7F\xFF\xFF\xFF", 8));
  CHECK_THROWS_WITH(bp::io::read_idx(idx), test::contains("needs 2147483647 bytes of data, the file has 0"));
  write_bytes(idx, std::string("\0\0\x42\x01\0\0\0\x01x", 9));
  CHECK_THROWS_WITH(bp::io::read_idx(idx), test::contains("unknown IDX type code 0x42"));
}

TEST_CASE("a .npy dtype's byte order must be one NumPy writes, and a shape's commas must follow sizes",
          "[io][npy]") {
  Scratch scratch;
  const auto npy = scratch / "x.npy";
  const std::string one("\0\0\x80\x3f", 4);  // 1.0f, little-endian
  write_bytes(npy, npy_bytes("{'descr': '=f4', 'fortran_order': False, 'shape': (1,), }", one));
  CHECK(bp::io::read_npy(npy).item<float>() == 1.f);  // '=': the machine's own order
  // Any other first character was taken for a byte order.
  write_bytes(npy, npy_bytes("{'descr': 'xf4', 'fortran_order': False, 'shape': (1,), }", one));
  CHECK_THROWS_WITH(bp::io::read_npy(npy),
                    test::contains("x.npy: malformed dtype 'xf4': its byte order is not <, >, | or ="));
  // "(,)" was read as "()", a scalar.
  write_bytes(npy, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (,), }", one));
  CHECK_THROWS_WITH(bp::io::read_npy(npy), test::contains("x.npy: malformed shape (,): a size is missing"));
  write_bytes(npy, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,,), }", one));
  CHECK_THROWS_WITH(bp::io::read_npy(npy), test::contains("malformed shape (1,,): a size is missing"));
  write_bytes(npy, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), }", one));
  CHECK(bp::io::read_npy(npy).sizes() == std::vector<int64_t>{1, 1});
}

TEST_CASE("a CSV file's UTF-8 byte-order mark is not part of its first column's name", "[io][csv]") {
  Scratch scratch;
  write_bytes(scratch / "bom.csv", "\xEF\xBB\xBFid,label\n1,2\n3,4\n");
  const auto table = bp::io::read_csv(scratch / "bom.csv", {"id", "label"});
  CHECK(torch::equal(table.at("id"), torch::tensor({1.f, 3.f})));
}

namespace {
struct CsvBatch : bp::Batch<CsvBatch> {};
}  // namespace

TEST_CASE("CSV columns read by name, with the line of a bad row", "[io][csv]") {
  Scratch scratch;
  const auto file = scratch / "table.csv";
  write_bytes(file, "id,\"width, cm\",label\n1,2.5,0\n\n2,-1e3,1\r\n3,+4,1\n");
  auto table = bp::io::read_csv(file, {"width, cm", "label"});
  CHECK(torch::allclose(table["width, cm"], torch::tensor({2.5f, -1000.f, 4.f})));
  CHECK(torch::equal(bp::io::read_csv(file, {"label"}, {.dtype = torch::kLong})["label"],
                     torch::tensor({0, 1, 1}, torch::kLong)));
  // A table makes a dataset as it is: one row per item.
  const bp::Dataset<CsvBatch> dataset(3, table);
  CHECK(dataset.data().at("label").size(0) == 3);

  bp::io::write_csv(scratch / "out.csv",
                    {{"a", torch::tensor({1.5, 2.25})}, {"b", torch::tensor({3.0, 4.0})}});
  auto back = bp::io::read_csv(scratch / "out.csv", {"a", "b"}, {.dtype = torch::kDouble});
  CHECK(torch::equal(back["a"], torch::tensor({1.5, 2.25}, torch::kDouble)));

  CHECK_THROWS_WITH(bp::io::read_csv(file, {"height"}),
                    test::contains("table.csv: no column 'height' (columns: id, width, cm, label)"));
  write_bytes(file, "a,b\n1,2\n3\n");
  CHECK_THROWS_WITH(bp::io::read_csv(file, {"a"}),
                    test::contains("table.csv: line 3: 1 fields, the header has 2"));
  write_bytes(file, "a,b\n1,2\n3,x4\n");
  CHECK_THROWS_WITH(bp::io::read_csv(file, {"a", "b"}),
                    test::contains("line 3, column 'b': 'x4' is not a number"));
  write_bytes(file, "");
  CHECK_THROWS_WITH(bp::io::read_csv(file, {"a"}), test::contains("empty file"));
}

TEST_CASE("write_csv quotes column names that hold a comma, a quote or a line break", "[io][csv]") {
  Scratch scratch;
  const auto file = scratch / "names.csv";
  const bp::io::Table table{{"plain", torch::tensor({1.0, 2.0}, torch::kDouble)},
                            {"say \"hi\"", torch::tensor({3.0, 4.0}, torch::kDouble)},
                            {"two\nlines", torch::tensor({5.0, 6.0}, torch::kDouble)},
                            {"width, cm", torch::tensor({7.5, 8.5}, torch::kDouble)}};
  bp::io::write_csv(file, table);
  CHECK(bytes_of(file).starts_with("plain,\"say \"\"hi\"\"\",\"two\nlines\",\"width, cm\"\n1,3,5,7.5\n"));
  const auto back =
      bp::io::read_csv(file, {"plain", "say \"hi\"", "two\nlines", "width, cm"}, {.dtype = torch::kDouble});
  for (const auto& [name, column] : table) {
    CAPTURE(name);
    CHECK(torch::equal(back.at(name), column));
  }
}

TEST_CASE("a quoted CSV field may hold line breaks; errors give the line its row starts on", "[io][csv]") {
  Scratch scratch;
  const auto file = scratch / "notes.csv";
  // Rows were split at every line break, quoted or not. A header name may hold one too.
  write_bytes(file, "id,\"a\nnote\",text,v\n1,\"7\",\"first\r\nsecond\",5\n\n2,8,\"say \"\"x\"\"\n\n\",6\n");
  const auto table = bp::io::read_csv(file, {"id", "a\nnote", "v"});
  CHECK(torch::equal(table.at("id"), torch::tensor({1.f, 2.f})));
  CHECK(torch::equal(table.at("a\nnote"), torch::tensor({7.f, 8.f})));
  CHECK(torch::equal(table.at("v"), torch::tensor({5.f, 6.f})));
  write_bytes(file, "id,note,v\n1,\"first\nsecond\",5\n2,plain,x\n");
  CHECK_THROWS_WITH(bp::io::read_csv(file, {"v"}),
                    test::contains("notes.csv: line 4, column 'v': 'x' is not a number"));
  write_bytes(file, "id,note\n1,\"never\nclosed\n");
  CHECK_THROWS_WITH(bp::io::read_csv(file, {"id"}),
                    test::contains("notes.csv: line 2: a quoted field is never closed"));
}

TEST_CASE("integer CSV columns read exactly, not through a double", "[io][csv]") {
  Scratch scratch;
  const auto file = scratch / "ids.csv";
  // 2^53 + 1 read as a double is 2^53; the extremes of int64 do not fit a double at all.
  const auto ids = torch::tensor({int64_t{9007199254740993}, std::numeric_limits<int64_t>::max(),
                                  std::numeric_limits<int64_t>::min(), int64_t{-7}});
  write_bytes(file, "id\n9007199254740993\n9223372036854775807\n-9223372036854775808\n+-7\n");
  CHECK_THROWS_WITH(bp::io::read_csv(file, {"id"}, {.dtype = torch::kLong}),
                    test::contains("ids.csv: line 5, column 'id': '+-7' is not a number"));
  write_bytes(file, "id\n9007199254740993\n9223372036854775807\n-9223372036854775808\n -7 \n");
  CHECK(torch::equal(bp::io::read_csv(file, {"id"}, {.dtype = torch::kLong}).at("id"), ids));
  // write_csv writes them exactly too.
  bp::io::write_csv(file, {{"id", ids}});
  CHECK(torch::equal(bp::io::read_csv(file, {"id"}, {.dtype = torch::kLong}).at("id"), ids));
}

TEST_CASE("a CSV value that its dtype cannot hold is an error naming the file, line, column and dtype",
          "[io][csv]") {
  Scratch scratch;
  const auto file = scratch / "values.csv";
  const auto read_as = [&](const std::string& value, at::ScalarType dtype) {
    write_bytes(file, "id,v\n1,0\n0," + value + "\n");  // ids that every dtype holds, bool too
    return bp::io::read_csv(file, {"id", "v"}, {.dtype = dtype});
  };
  // Each was read through a double and converted: wrapped, truncated or made infinite.
  CHECK_THROWS_WITH(read_as("300", torch::kByte),
                    test::contains("values.csv: line 3, column 'v': '300' is out of range for dtype Byte"));
  CHECK_THROWS_WITH(read_as("-1", torch::kByte), test::contains("'-1' is out of range for dtype Byte"));
  CHECK_THROWS_WITH(read_as("40000", torch::kShort),
                    test::contains("'40000' is out of range for dtype Short"));
  CHECK_THROWS_WITH(read_as("2", torch::kBool), test::contains("'2' is out of range for dtype Bool"));
  CHECK_THROWS_WITH(read_as("9223372036854775808", torch::kLong),
                    test::contains("'9223372036854775808' is out of range for dtype Long"));
  CHECK_THROWS_WITH(read_as("3.7", torch::kInt),
                    test::contains("line 3, column 'v': '3.7' is not an integer, as dtype Int needs"));
  CHECK_THROWS_WITH(read_as("1e39", torch::kFloat), test::contains("'1e39' is out of range for dtype Float"));
  CHECK_THROWS_WITH(read_as("70000", torch::kHalf), test::contains("'70000' is out of range for dtype Half"));
  CHECK_THROWS_WITH(read_as("+-5", torch::kFloat), test::contains("'+-5' is not a number"));
  // What fits is read as it is; infinities are values of every floating type.
  CHECK(torch::equal(read_as("255", torch::kByte).at("v"), torch::tensor({0, 255}, torch::kByte)));
  CHECK(torch::equal(read_as("-128", torch::kChar).at("v"), torch::tensor({0, -128}, torch::kChar)));
  CHECK(torch::equal(read_as("1", torch::kBool).at("v"), torch::tensor({false, true})));
  CHECK(read_as("-inf", torch::kFloat).at("v")[1].item<float>() == -std::numeric_limits<float>::infinity());
  CHECK_THROWS_WITH(read_as("1", torch::kComplexFloat),
                    test::contains("a CSV column cannot be read as dtype ComplexFloat"));
}

TEST_CASE("an image file whose header announces more than the file holds is an error, not an allocation",
          "[io][image]") {
  Scratch scratch;
  // 20 bytes that announce 30000x30000 gray pixels (900 MB).
  write_bytes(scratch / "huge.pgm", "P5\n30000 30000\n255\na");
  CHECK_THROWS_WITH(bp::io::read_image(scratch / "huge.pgm"),
                    test::contains("huge.pgm: cannot decode image: its header announces 30000x30000 pixels, "
                                   "more than a file of 20 bytes can hold"));
  // A 1x1 PNG whose data chunk announces 2 GB (found by fuzzing: stb allocated it before reading).
  bp::io::write_image(scratch / "tiny.png", torch::zeros({1, 1, 1}, torch::kByte));
  auto png = bytes_of(scratch / "tiny.png");
  const auto idat = png.find("IDAT");
  REQUIRE(idat != std::string::npos);
  png.replace(idat - 4, 4, std::string("\x7F\xFF\xFF\xFF", 4));
  write_bytes(scratch / "tiny.png", png);
  CHECK_THROWS_WITH(bp::io::read_image(scratch / "tiny.png"),
                    test::contains("tiny.png: cannot decode image: a PNG chunk announces 2147483647 bytes"));
}

TEST_CASE("images round-trip through PNG and decode in parallel", "[io][image]") {
  Scratch scratch;
  std::vector<fs::path> files;
  std::vector<at::Tensor> images;
  for (int i = 0; i < 6; ++i) {
    images.push_back(torch::randint(0, 255, {3, 9, 7}).to(torch::kByte));
    files.push_back(scratch / ("img" + std::to_string(i) + ".png"));
    bp::io::write_image(files.back(), images.back());
  }
  CHECK(torch::equal(bp::io::read_image(files[0]), images[0]));
  CHECK(bp::io::read_image(files[0], 1).sizes() == std::vector<int64_t>{1, 9, 7});
  CHECK(torch::equal(bp::io::read_images(files), torch::stack(images)));

  bp::io::write_image(scratch / "odd.png", torch::zeros({3, 5, 5}, torch::kByte));
  files.push_back(scratch / "odd.png");
  CHECK_THROWS_WITH(bp::io::read_images(files),
                    test::contains("odd.png: image of shape [3, 5, 5] among images of shape [3, 9, 7]"));
  write_bytes(scratch / "broken.png", bytes_of(files[1]).substr(0, 40));
  CHECK_THROWS_WITH(bp::io::read_image(scratch / "broken.png"),
                    test::contains("broken.png: cannot decode image"));
  bp::io::write_image(scratch / "photo.jpg", images[2]);
  CHECK(bp::io::read_image(scratch / "photo.jpg").sizes() == images[2].sizes());  // lossy: shape only
}

TEST_CASE("read_image converts to 1, 3 or 4 channels, and refuses other counts", "[io][image]") {
  Scratch scratch;
  const auto file = scratch / "rgb.png";
  bp::io::write_image(file, torch::randint(0, 255, {3, 4, 5}).to(torch::kByte));
  CHECK(bp::io::read_image(file, 4).sizes() == std::vector<int64_t>{4, 4, 5});
  // 2 made gray and alpha; stb asserts on 5 or -1.
  for (int channels : {2, 5, -1}) {
    CAPTURE(channels);
    CHECK_THROWS_WITH(bp::io::read_image(file, channels),
                      test::contains("rgb.png: cannot decode image into " + std::to_string(channels) +
                                     " channels: the count must be 1, 3 or 4"));
  }
}

TEST_CASE("a pipeline starts from files and dumps items to files", "[io][images]") {
  Scratch scratch;
  const auto data = torch::randint(0, 255, {6, 1, 4, 4}).to(torch::kByte);
  bp::Dataset<bp::ImagesBatch> source(6, {{"images", data}});
  source.pipeline()
      .dump(scratch.folder / "npy")
      .dump(scratch.folder / "png", "png")
      .run({.batch_size = 4, .prefetch = 1});

  for (auto [format, pattern] : {std::pair{"npy", "npy/*.npy"}, std::pair{"image", "png/*.png"}}) {
    CAPTURE(format);
    bp::Dataset<bp::ImagesBatch> files(
        bp::Index::from_glob((scratch.folder / pattern).string(), /*strip_extension*/ true));
    REQUIRE(files.size() == 6);
    auto batch = files.pipeline().load(format).next_batch({.batch_size = 6});
    for (std::size_t i = 0; i < batch->size(); ++i) {
      CHECK(torch::equal(batch->item(i)["images"], data[std::stoi(batch->item(i).id().string())]));
    }
  }
  CHECK_THROWS_WITH(source.pipeline().load("npy").run({}),
                    test::contains("action 'load'") && test::contains("holds no files"));
}

namespace {

/// A PNG written byte by byte (signature, IHDR, optional PLTE and tRNS, one IDAT, IEND), so that
/// every colour type and depth can be made without an encoder that offers them all. `rows` are
/// the raw scanlines without filter bytes (each gets filter 0).
std::string raw_png(uint32_t width, uint32_t height, uint8_t depth, uint8_t color_type,
                    const std::string& rows, const std::string& palette = "",
                    const std::string& transparency = "") {
  const auto be32 = [](uint32_t v) {
    return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  };
  const auto chunk = [&](const std::string& type, const std::string& data) {
    const std::string body = type + data;
    const auto crc = crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
    return be32(static_cast<uint32_t>(data.size())) + body + be32(static_cast<uint32_t>(crc));
  };
  const std::size_t row_bytes = rows.size() / height;
  std::string filtered;
  for (uint32_t y = 0; y < height; ++y) filtered += '\0' + rows.substr(y * row_bytes, row_bytes);
  uLongf packed_size = compressBound(static_cast<uLong>(filtered.size()));
  std::string packed(packed_size, '\0');
  compress(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
           reinterpret_cast<const Bytef*>(filtered.data()), static_cast<uLong>(filtered.size()));
  packed.resize(packed_size);
  std::string png = "\x89PNG\r\n\x1a\n";
  png += chunk("IHDR", be32(width) + be32(height) + std::string{char(depth), char(color_type), 0, 0, 0});
  if (!palette.empty()) png += chunk("PLTE", palette);
  if (!transparency.empty()) png += chunk("tRNS", transparency);
  return png + chunk("IDAT", packed) + chunk("IEND", "");
}

/// stb's decode of `bytes` into `channels`, as [height, width, channels]: the reference.
at::Tensor stb_decode(const std::string& bytes, int channels) {
  int w = 0, h = 0, n = 0;
  auto* pixels = stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                                       static_cast<int>(bytes.size()), &w, &h, &n, channels);
  REQUIRE(pixels);
  auto tensor = torch::from_blob(pixels, {h, w, channels}, torch::kByte).clone();
  stbi_image_free(pixels);
  return tensor;
}

std::string random_bytes(std::size_t n, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(n, '\0');
  for (auto& b : bytes) b = static_cast<char>(random() & 0xFF);
  return bytes;
}

/// A smooth colour image [height, width, 3] (gradients and a disc): what a JPEG keeps well.
at::Tensor smooth_image(int64_t height, int64_t width) {
  auto y = torch::arange(height).view({height, 1, 1}).to(torch::kFloat) / height;
  auto x = torch::arange(width).view({1, width, 1}).to(torch::kFloat) / width;
  auto c = torch::tensor({0.2f, 0.5f, 0.9f}).view({1, 1, 3});
  auto disc = (((y - 0.5).pow(2) + (x - 0.5).pow(2)) < 0.1).to(torch::kFloat);
  return ((x * c + y * (1 - c)) * 160 + disc * 80).clamp(0, 255).to(torch::kByte);
}

}  // namespace

TEST_CASE("PNGs of every colour type and depth decode to what stb decodes, in the channels asked for",
          "[io][image]") {
  Scratch scratch;
  const uint32_t w = 5, h = 3;
  struct Case {
    std::string name;
    std::string png;
    int own;
  };
  const std::string palette = random_bytes(3 * 4, 1);
  std::string indexes;
  for (uint32_t i = 0; i < w * h; ++i) indexes += char(i % 4);
  const std::vector<Case> cases{
      {"grey 8", raw_png(w, h, 8, 0, random_bytes(w * h, 2)), 1},
      {"grey 16", raw_png(w, h, 16, 0, random_bytes(w * h * 2, 3)), 1},
      {"grey 4", raw_png(w, h, 4, 0, std::string(h * 3, '\x5a')), 1},
      {"grey and alpha 8", raw_png(w, h, 8, 4, random_bytes(w * h * 2, 4)), 2},
      {"grey and alpha 16", raw_png(w, h, 16, 4, random_bytes(w * h * 4, 5)), 2},
      {"RGB 8", raw_png(w, h, 8, 2, random_bytes(w * h * 3, 6)), 3},
      {"RGB 16", raw_png(w, h, 16, 2, random_bytes(w * h * 6, 7)), 3},
      {"RGBA 8", raw_png(w, h, 8, 6, random_bytes(w * h * 4, 8)), 4},
      {"RGBA 16", raw_png(w, h, 16, 6, random_bytes(w * h * 8, 9)), 4},
      {"palette", raw_png(w, h, 8, 3, indexes, palette), 3},
      {"palette and tRNS", raw_png(w, h, 8, 3, indexes, palette, "\x10\xff\x80"), 4},
  };
  for (const auto& [name, png, own] : cases) {
    CAPTURE(name);
    write_bytes(scratch / "image.png", png);
    const auto decoded = bp::io::decode_image_file(scratch / "image.png");
    CHECK(decoded.sizes() == std::vector<int64_t>{h, w, own});
    for (int channels : {1, 3, 4}) {
      CAPTURE(channels);
      const auto mine = bp::io::decode_image_file(scratch / "image.png", {.channels = channels});
      const auto reference = stb_decode(png, channels);
      // stb's grey from colour is (77 r + 150 g + 29 b) >> 8, PIL's (and batchpipe's) rounds the
      // ITU-R 601 weights: they differ by at most one step.
      const bool luma = channels == 1 && own >= 3;
      CHECK((mine.to(torch::kInt) - reference.to(torch::kInt)).abs().max().item<int>() <= (luma ? 1 : 0));
    }
    CHECK(torch::equal(bp::io::read_image(scratch / "image.png"), decoded.permute({2, 0, 1})));
  }
}

TEST_CASE(
    "JPEGs decode with libjpeg-turbo close to stb, and at a reduced DCT scale when a smaller image is enough",
    "[io][image]") {
  Scratch scratch;
  const auto image = smooth_image(96, 128);
  bp::io::write_image(scratch / "photo.jpg", image.permute({2, 0, 1}));
  const auto bytes = bytes_of(scratch / "photo.jpg");
  const auto full = bp::io::decode_image_file(scratch / "photo.jpg");
  REQUIRE(full.sizes() == std::vector<int64_t>{96, 128, 3});
  const auto difference = (full.to(torch::kFloat) - stb_decode(bytes, 3).to(torch::kFloat)).abs();
  CHECK(difference.mean().item<float>() < 1.0f);
  CHECK((full.to(torch::kFloat) - image.to(torch::kFloat)).abs().mean().item<float>() < 3.0f);
  // At least 30 x 20: a quarter (32 x 24) is the smallest scale that gives it.
  const auto quarter = bp::io::decode_image_file(scratch / "photo.jpg", {.min_width = 30, .min_height = 20});
  CHECK(quarter.sizes() == std::vector<int64_t>{24, 32, 3});
  // Scaled in the DCT, it is close to the full decode averaged over 4 x 4 blocks.
  const auto averaged =
      at::avg_pool2d(full.permute({2, 0, 1}).to(torch::kFloat).unsqueeze(0), 4).squeeze(0).permute({1, 2, 0});
  CHECK((quarter.to(torch::kFloat) - averaged).abs().mean().item<float>() < 2.0f);
  CHECK(bp::io::decode_image_file(scratch / "photo.jpg", {.min_width = 200}).sizes()[1] ==
        128);  // never enlarged
  CHECK(bp::io::decode_image_file(scratch / "photo.jpg", {.channels = 1}).sizes() ==
        std::vector<int64_t>{96, 128, 1});
  CHECK(bp::io::decode_image_file(scratch / "photo.jpg", {.channels = 4})
            .select(2, 3)
            .eq(255)
            .all()
            .item<bool>());
}

TEST_CASE("a bad image file is a FileError naming it", "[io][image]") {
  Scratch scratch;
  bp::io::write_image(scratch / "photo.jpg", smooth_image(64, 64).permute({2, 0, 1}));
  const auto jpeg = bytes_of(scratch / "photo.jpg");
  const auto expect_error = [&](const std::string& name, const std::string& bytes,
                                const std::string& message) {
    CAPTURE(name);
    write_bytes(scratch / name, bytes);
    CHECK_THROWS_WITH(bp::io::decode_image_file(scratch / name), test::contains(name + ": " + message));
    CHECK_THROWS_AS(bp::io::read_image(scratch / name), bp::FileError);
  };
  expect_error("truncated.jpg", jpeg.substr(0, jpeg.size() / 2),
               "cannot decode image: a corrupt or truncated JPEG");
  expect_error("empty.jpg", "", "cannot decode image: the file is empty");
  expect_error("text.jpg", "this is not an image\n", "cannot decode image");
  std::string corrupt = jpeg;
  for (std::size_t i = corrupt.size() / 2; i < corrupt.size() / 2 + 64; ++i) corrupt[i] = '\xFF';
  expect_error("corrupt.jpg", corrupt, "cannot decode image");
  // Headers announcing 65,000 x 65,000 pixels (JPEG's most) and 100,000 x 100,000 in a few bytes.
  std::string huge_jpeg = jpeg;
  const auto frame = huge_jpeg.find("\xFF\xC0");  // SOF0: length, precision, height, width
  REQUIRE(frame != std::string::npos);
  huge_jpeg.replace(frame + 5, 4, std::string("\xFD\xE8\xFD\xE8", 4));
  expect_error("huge.jpg", huge_jpeg, "cannot decode image: its header announces 65000x65000 pixels");
  expect_error("huge.png", raw_png(100000, 100000, 8, 2, std::string(3, '\0')),
               "cannot decode image: its header announces 100000x100000 pixels");
  CHECK_THROWS_WITH(bp::io::decode_image_file(scratch / "gone.jpg"),
                    test::contains("gone.jpg: no such file"));
  CHECK_THROWS_WITH(bp::io::decode_image_file(scratch.folder), test::contains("not a regular file"));
  CHECK_THROWS_WITH(bp::io::decode_image_file(scratch / "photo.jpg", {.channels = 2}),
                    test::contains("photo.jpg: cannot decode image into 2 channels"));
}

TEST_CASE("an ImageFolder reads class folders: sorted classes, case-blind extensions, hidden files skipped",
          "[io][image_folder]") {
  Scratch scratch;
  const auto root = scratch / "train";
  const auto pixel = torch::zeros({3, 2, 2}, torch::kByte);
  for (const auto* file : {"dog/b.png", "dog/A.PNG", "cat/x.jpg", "cat/nested/y.png", "cat/.hidden.png",
                           "cat/.cache/z.png", "cat/notes.txt", "bird/1.JPEG"}) {
    fs::create_directories((root / file).parent_path());
    if (fs::path(file).extension() == ".txt") {
      write_bytes(root / file, "a note");
    } else {
      write_bytes(root / file, "placeholder");
    }
  }
  fs::create_directories(root / ".git");
  const auto folder = bp::ImageFolder::from_folder(root);
  CHECK(folder.classes == std::vector<std::string>{"bird", "cat", "dog"});
  std::vector<std::string> ids;
  for (const auto& id : folder.index.ids()) ids.push_back(id.string());
  CHECK(ids ==
        std::vector<std::string>{"bird/1.JPEG", "cat/nested/y.png", "cat/x.jpg", "dog/A.PNG", "dog/b.png"});
  CHECK(torch::equal(folder.labels, torch::tensor({0, 1, 1, 2, 2}, torch::kLong)));
  CHECK(folder.index.path(2) == root / "cat/x.jpg");
  const auto dataset = folder.dataset();
  CHECK(dataset.size() == 5);
  CHECK(torch::equal(dataset.data().at("labels"), folder.labels));

  fs::create_directories(root / "empty");
  CHECK_THROWS_WITH(bp::ImageFolder::from_folder(root),
                    test::contains("empty: class folder holds no images"));
  fs::remove(root / "empty");
  CHECK_THROWS_WITH(bp::ImageFolder::from_folder(root / "cat/nested"),
                    test::contains("holds no class folders"));
  CHECK_THROWS_WITH(bp::ImageFolder::from_folder(scratch / "nowhere"),
                    test::contains("nowhere: not a folder"));
  CHECK(bp::ImageFolder::from_folder(root, {.extensions = {".png", ".jpeg"}}).index.size() == 4);
  CHECK_THROWS_WITH(bp::ImageFolder::from_folder(root, {.extensions = {".png"}}),
                    test::contains("bird: class folder holds no images (extensions .png)"));
}

TEST_CASE("an ImageFolder reads a list file: paths beside the list, class names or numbers as labels",
          "[io][image_folder]") {
  Scratch scratch;
  fs::create_directories(scratch / "data/images");
  for (const auto* file : {"a.png", "b.png", "c.png"}) write_bytes(scratch / "data/images" / file, "x");
  write_bytes(scratch / "data/list.csv",
              "path,label\nimages/a.png,zebra\n\"images/b.png\",ant\nimages/c.png,zebra\n");
  const auto named = bp::ImageFolder::from_list(scratch / "data/list.csv");
  CHECK(named.classes == std::vector<std::string>{"ant", "zebra"});
  CHECK(torch::equal(named.labels, torch::tensor({1, 0, 1}, torch::kLong)));
  CHECK(named.index.id(1).string() == "images/b.png");
  CHECK(named.index.path(1) == scratch / "data/images/b.png");

  write_bytes(scratch / "data/numbers.csv", "images/a.png,2\nimages/b.png,0\n");
  const auto numbered = bp::ImageFolder::from_list(scratch / "data/numbers.csv");
  CHECK(numbered.classes == std::vector<std::string>{"0", "1", "2"});
  CHECK(torch::equal(numbered.labels, torch::tensor({2, 0}, torch::kLong)));

  write_bytes(scratch / "data/missing.csv", "images/a.png,1\nimages/gone.png,1\n");
  CHECK_THROWS_WITH(
      bp::ImageFolder::from_list(scratch / "data/missing.csv"),
      test::contains("gone.png: named by ") && test::contains("missing.csv line 2, does not exist"));
  write_bytes(scratch / "data/short.csv", "images/a.png\n");
  CHECK_THROWS_WITH(bp::ImageFolder::from_list(scratch / "data/short.csv"),
                    test::contains("short.csv: line 1: a row is a path and a label, found 1 field(s)"));
  write_bytes(scratch / "data/twice.csv", "images/a.png,1\nimages/a.png,2\n");
  CHECK_THROWS_WITH(bp::ImageFolder::from_list(scratch / "data/twice.csv"),
                    test::contains("twice.csv: Index: duplicate id 'images/a.png'"));
  CHECK_THROWS_WITH(bp::ImageFolder::from_list(scratch / "data/none.csv"),
                    test::contains("none.csv: no such file"));
}

TEST_CASE(
    "image files that once went wrong: FIFOs, top-down BMPs, 16-bit PNMs, bilevel PNGs, grey from colour",
    "[io][image]") {
  Scratch scratch;
  // A FIFO named like an image: refused at once (opening it for reading used to wait for a writer).
  REQUIRE(::mkfifo((scratch / "fifo.jpg").c_str(), 0600) == 0);
  CHECK_THROWS_WITH(bp::io::decode_image_file(scratch / "fifo.jpg"),
                    test::contains("fifo.jpg: not a regular file"));
  // A top-down BMP (negative height): the rows in file order.
  const auto image = torch::randint(0, 255, {3, 5, 4}).to(torch::kByte);
  bp::io::write_image(scratch / "up.png", image);
  const auto rgb = image.permute({1, 2, 0}).contiguous();
  REQUIRE(stbi_write_bmp((scratch / "bottom-up.bmp").c_str(), 4, 5, 3, rgb.data_ptr()));
  auto bmp = bytes_of(scratch / "bottom-up.bmp");
  const int32_t height = -5;
  bmp.replace(22, 4, std::string(reinterpret_cast<const char*>(&height), 4));
  write_bytes(scratch / "top-down.bmp", bmp);
  CHECK(torch::equal(bp::io::decode_image_file(scratch / "bottom-up.bmp"), rgb));
  CHECK(torch::equal(bp::io::decode_image_file(scratch / "top-down.bmp"), rgb.flip(0)));
  // stb reads 16-bit PNM samples in the wrong byte order: refused rather than wrong.
  write_bytes(scratch / "deep.pgm", "P5\n2 2\n65535\n" + std::string(8, '\x12'));
  CHECK_THROWS_WITH(bp::io::decode_image_file(scratch / "deep.pgm"),
                    test::contains("deep.pgm: cannot decode image: a 16-bit PNM"));
  // A bilevel 8000 x 8000 page in a few kilobytes: one byte per pixel is what it can hold.
  write_bytes(scratch / "page.png", raw_png(8000, 8000, 1, 0, std::string(8000 * 1000, '\xff')));
  const auto page = bp::io::decode_image_file(scratch / "page.png");
  CHECK(page.sizes() == std::vector<int64_t>{8000, 8000, 1});
  CHECK(page.min().item<int>() == 255);
  // Grey from a colour JPEG or BMP is the luma of its RGB pixels, rounded as PIL's "L" is.
  bp::io::write_image(scratch / "photo.jpg", smooth_image(32, 48).permute({2, 0, 1}));
  REQUIRE(stbi_write_bmp((scratch / "colour.bmp").c_str(), 4, 5, 3, rgb.data_ptr()));
  for (const auto* name : {"photo.jpg", "colour.bmp"}) {
    CAPTURE(name);
    const auto colour = bp::io::decode_image_file(scratch / name, {.channels = 3}).to(torch::kLong);
    const auto luma =
        (colour.select(2, 0) * 19595 + colour.select(2, 1) * 38470 + colour.select(2, 2) * 7471 + 0x8000)
            .floor_divide(65536);
    CHECK(torch::equal(
        bp::io::decode_image_file(scratch / name, {.channels = 1}).select(2, 0).to(torch::kLong), luma));
  }
}

TEST_CASE("an ImageFolder's list file: one spelling per file, bounded class numbers, a folder is no list",
          "[io][image_folder]") {
  Scratch scratch;
  fs::create_directories(scratch / "img");
  write_bytes(scratch / "img/a.jpg", "x");
  write_bytes(scratch / "twice.csv", "img/a.jpg,cat\n./img/a.jpg,dog\n");
  CHECK_THROWS_WITH(bp::ImageFolder::from_list(scratch / "twice.csv"),
                    test::contains("twice.csv: Index: duplicate id 'img/a.jpg'"));
  write_bytes(scratch / "huge_label.csv", "img/a.jpg,2147483647\n");
  CHECK_THROWS_WITH(
      bp::ImageFolder::from_list(scratch / "huge_label.csv"),
      test::contains("huge_label.csv: the label 2147483647 would make more than 1048576 classes"));
  CHECK_THROWS_WITH(bp::ImageFolder::from_list(scratch / "img"), test::contains("img: not a regular file"));
}
