#include "deltaserve/client/cli/npz.h"

#include <array>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace deltaserve::client::cli {
namespace {

// ---- little-endian fields ----

template <typename T>
void Put(std::string* out, T value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(T));  // Little-endian hosts.
}

template <typename T>
T Get(const std::string& in, size_t offset) {
  T value{};
  if (offset + sizeof(T) <= in.size()) std::memcpy(&value, in.data() + offset, sizeof(T));
  return value;
}

// CRC-32 (IEEE 802.3, reflected), as zip requires.
uint32_t ZipCrc32(const std::string& data) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t c = b;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? 0xedb88320u : 0);
      t[b] = c;
    }
    return t;
  }();
  uint32_t crc = 0xffffffffu;
  for (unsigned char byte : data) crc = (crc >> 8) ^ table[(crc ^ byte) & 0xff];
  return ~crc;
}

absl::Status Malformed(const std::string& path, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": not a readable .npz (", why, ")"));
}

// ---- .npy ----

std::string ShapeText(const std::vector<uint64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

std::string EncodeNpy(const NpyArray& a) {
  const std::string dict =
      absl::StrCat("{'descr': '",
                   a.is_uint64_scalar ? "<u8"
                   : a.is_float64     ? "<f8"
                                      : "<f4",
                   "', 'fortran_order': False, 'shape': ", ShapeText(a.shape), ", }");
  // Magic (6) + version (2) + header length (2) + header, padded with spaces
  // and ending in '\n', is a multiple of 64 bytes (as numpy writes it).
  std::string header = dict;
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  Put<uint16_t>(&out, static_cast<uint16_t>(header.size()));
  out += header;
  if (a.is_uint64_scalar) {
    Put<uint64_t>(&out, a.scalar);
  } else if (a.is_float64) {
    out.append(reinterpret_cast<const char*>(a.doubles.data()), a.doubles.size() * sizeof(double));
  } else {
    out.append(reinterpret_cast<const char*>(a.values.data()), a.values.size() * sizeof(float));
  }
  return out;
}

// The value of 'key' in a .npy header dict, e.g. "'<f4'" or "(16, 4)".
std::string DictValue(absl::string_view dict, absl::string_view key) {
  const size_t at = dict.find(absl::StrCat("'", key, "':"));
  if (at == absl::string_view::npos) return "";
  absl::string_view rest = absl::StripLeadingAsciiWhitespace(dict.substr(at + key.size() + 3));
  size_t end;
  if (!rest.empty() && rest[0] == '(') {
    end = rest.find(')') + 1;
  } else if (!rest.empty() && rest[0] == '\'') {
    end = rest.find('\'', 1) + 1;
  } else {
    end = rest.find(',');
  }
  return std::string(rest.substr(0, end));
}

absl::StatusOr<NpyArray> DecodeNpy(const std::string& path, std::string name,
                                   const std::string& bytes) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    return Malformed(path, absl::StrCat(name, ".npy has no NUMPY header"));
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t header_len =
      major == 1 ? Get<uint16_t>(bytes, 8) : static_cast<size_t>(Get<uint32_t>(bytes, 8));
  const size_t data_at = 8 + length_bytes + header_len;
  if (data_at > bytes.size()) return Malformed(path, absl::StrCat(name, ".npy header truncated"));
  const std::string dict = bytes.substr(8 + length_bytes, header_len);
  const std::string descr = DictValue(dict, "descr");
  if (DictValue(dict, "fortran_order") != "False") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", name, " is in Fortran order; expected C order"));
  }
  NpyArray a;
  a.name = std::move(name);
  std::string shape = DictValue(dict, "shape");
  shape = std::string(absl::StripSuffix(absl::StripPrefix(shape, "("), ")"));
  uint64_t count = 1;
  for (absl::string_view dim : absl::StrSplit(shape, ',', absl::SkipWhitespace())) {
    uint64_t d;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(dim), &d)) {
      return Malformed(path, absl::StrCat(a.name, ".npy shape \"", shape, "\""));
    }
    a.shape.push_back(d);
    count *= d;
  }
  const size_t have = bytes.size() - data_at;
  const char* data = bytes.data() + data_at;
  if (descr == "'<f4'" || descr == "'<f8'") {
    const size_t width = descr == "'<f4'" ? 4 : 8;
    if (have < count * width) return Malformed(path, absl::StrCat(a.name, ".npy data truncated"));
    a.values.resize(count);
    a.doubles.resize(count);
    a.is_float64 = width == 8;
    for (uint64_t i = 0; i < count; ++i) {
      if (width == 4) {
        std::memcpy(&a.values[i], data + i * 4, 4);
        a.doubles[i] = a.values[i];
      } else {
        double d;
        std::memcpy(&d, data + i * 8, 8);
        a.values[i] = static_cast<float>(d);
        a.doubles[i] = d;
      }
    }
  } else if ((descr == "'<u8'" || descr == "'<i8'") && a.shape.empty() && have >= 8) {
    a.is_uint64_scalar = true;
    std::memcpy(&a.scalar, data, 8);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", a.name, " has dtype ", descr,
                                                   "; expected float32 or float64 arrays"));
  }
  return a;
}

}  // namespace

absl::Status WriteNpz(const std::string& path, const std::vector<NpyArray>& arrays) {
  std::string zip, central;
  for (const NpyArray& a : arrays) {
    const std::string name = a.name + ".npy";
    const std::string data = EncodeNpy(a);
    const uint32_t crc = ZipCrc32(data);
    const auto offset = static_cast<uint32_t>(zip.size());
    // Local file header: stored (method 0), no data descriptor.
    Put<uint32_t>(&zip, 0x04034b50);
    for (uint16_t v : {uint16_t{20}, uint16_t{0}, uint16_t{0}, uint16_t{0}, uint16_t{0x21}}) {
      Put<uint16_t>(&zip, v);  // version, flags, method, time, date (1980-01-01)
    }
    Put<uint32_t>(&zip, crc);
    Put<uint32_t>(&zip, static_cast<uint32_t>(data.size()));
    Put<uint32_t>(&zip, static_cast<uint32_t>(data.size()));
    Put<uint16_t>(&zip, static_cast<uint16_t>(name.size()));
    Put<uint16_t>(&zip, 0);
    zip += name;
    zip += data;
    // Its central directory entry.
    Put<uint32_t>(&central, 0x02014b50);
    for (uint16_t v :
         {uint16_t{20}, uint16_t{20}, uint16_t{0}, uint16_t{0}, uint16_t{0}, uint16_t{0x21}}) {
      Put<uint16_t>(&central, v);  // made by, needed, flags, method, time, date
    }
    Put<uint32_t>(&central, crc);
    Put<uint32_t>(&central, static_cast<uint32_t>(data.size()));
    Put<uint32_t>(&central, static_cast<uint32_t>(data.size()));
    Put<uint16_t>(&central, static_cast<uint16_t>(name.size()));
    for (int i = 0; i < 4; ++i) Put<uint16_t>(&central, 0);  // extra, comment, disk, internal
    Put<uint32_t>(&central, 0);                              // external attributes
    Put<uint32_t>(&central, offset);
    central += name;
  }
  const auto central_at = static_cast<uint32_t>(zip.size());
  zip += central;
  Put<uint32_t>(&zip, 0x06054b50);  // End of central directory.
  Put<uint16_t>(&zip, 0);
  Put<uint16_t>(&zip, 0);
  Put<uint16_t>(&zip, static_cast<uint16_t>(arrays.size()));
  Put<uint16_t>(&zip, static_cast<uint16_t>(arrays.size()));
  Put<uint32_t>(&zip, static_cast<uint32_t>(central.size()));
  Put<uint32_t>(&zip, central_at);
  Put<uint16_t>(&zip, 0);
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(zip.data(), static_cast<std::streamsize>(zip.size()));
  file.close();
  if (!file) return absl::UnavailableError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NpyArray>> ReadNpz(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
  std::stringstream buffer;
  buffer << file.rdbuf();
  const std::string zip = buffer.str();
  // The end-of-central-directory record: the last signature within the
  // final 22 + 65535 (comment) bytes.
  size_t eocd = std::string::npos;
  for (size_t i = zip.size() >= 22 ? zip.size() - 22 : 0; zip.size() >= 22; --i) {
    if (Get<uint32_t>(zip, i) == 0x06054b50) {
      eocd = i;
      break;
    }
    if (i == 0 || zip.size() - i > 22 + 65535) break;
  }
  if (eocd == std::string::npos) return Malformed(path, "no zip end-of-central-directory");
  const uint16_t entries = Get<uint16_t>(zip, eocd + 10);
  size_t at = Get<uint32_t>(zip, eocd + 16);
  std::vector<NpyArray> arrays;
  for (uint16_t e = 0; e < entries; ++e) {
    if (Get<uint32_t>(zip, at) != 0x02014b50) return Malformed(path, "bad central directory");
    const uint16_t method = Get<uint16_t>(zip, at + 10);
    uint64_t size = Get<uint32_t>(zip, at + 20);
    const uint16_t name_len = Get<uint16_t>(zip, at + 28);
    const uint16_t extra_len = Get<uint16_t>(zip, at + 30);
    const uint16_t comment_len = Get<uint16_t>(zip, at + 32);
    uint64_t local = Get<uint32_t>(zip, at + 42);
    const std::string name = zip.substr(at + 46, name_len);
    // Zip64 sizes/offset (np.savez asks for zip64 on large arrays).
    for (size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint16_t id = Get<uint16_t>(zip, x);
      const uint16_t len = Get<uint16_t>(zip, x + 2);
      if (id == 0x0001) {
        size_t field = x + 4;
        if (Get<uint32_t>(zip, at + 24) == 0xffffffffu) field += 8;  // Uncompressed size.
        if (size == 0xffffffffu) {
          size = Get<uint64_t>(zip, field);
          field += 8;
        }
        if (local == 0xffffffffu) local = Get<uint64_t>(zip, field);
      }
      x += 4 + len;
    }
    at += 46 + name_len + extra_len + comment_len;
    if (method != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", name, " is compressed; write it with np.savez, not np.savez_compressed"));
    }
    if (Get<uint32_t>(zip, local) != 0x04034b50) return Malformed(path, "bad local header");
    const uint64_t data_at =
        local + 30 + Get<uint16_t>(zip, local + 26) + Get<uint16_t>(zip, local + 28);
    if (data_at + size > zip.size()) return Malformed(path, absl::StrCat(name, " truncated"));
    if (!absl::EndsWith(name, ".npy")) continue;
    absl::StatusOr<NpyArray> array =
        DecodeNpy(path, std::string(absl::StripSuffix(name, ".npy")), zip.substr(data_at, size));
    if (!array.ok()) return array.status();
    arrays.push_back(*std::move(array));
  }
  return arrays;
}

std::vector<NpyArray> TensorsFromParameters(const deltaserve::v1::ModelSpec& spec,
                                            const std::vector<float>& parameters,
                                            uint64_t version) {
  std::vector<NpyArray> arrays;
  uint64_t fan_in = spec.input_dim();
  size_t at = 0;
  for (int i = 0; i < spec.layers_size(); ++i) {
    const uint64_t units = spec.layers(i).units();
    const std::string module = absl::StrCat(2 * i);
    NpyArray weight{module + ".weight", {units, fan_in}, {}};
    NpyArray bias{module + ".bias", {units}, {}};
    const auto take = [&](NpyArray& a, uint64_t n) {
      const size_t end = std::min(parameters.size(), at + static_cast<size_t>(n));
      a.values.assign(parameters.begin() + static_cast<std::ptrdiff_t>(at),
                      parameters.begin() + static_cast<std::ptrdiff_t>(end));
      at = end;
    };
    take(weight, units * fan_in);
    take(bias, units);
    arrays.push_back(std::move(weight));
    arrays.push_back(std::move(bias));
    fan_in = units;
  }
  NpyArray v{"version", {}, {}};
  v.is_uint64_scalar = true;
  v.scalar = version;
  arrays.push_back(std::move(v));
  return arrays;
}

absl::StatusOr<std::vector<float>> ParametersFromTensors(const deltaserve::v1::ModelSpec& spec,
                                                         const std::vector<NpyArray>& arrays) {
  std::map<std::string, const NpyArray*> by_name;
  for (const NpyArray& a : arrays) by_name[a.name] = &a;
  by_name.erase("version");
  by_name.erase("normalizer.mean");
  by_name.erase("normalizer.var");
  by_name.erase("normalizer.count");
  std::vector<float> parameters;
  uint64_t fan_in = spec.input_dim();
  for (int i = 0; i < spec.layers_size(); ++i) {
    const uint64_t units = spec.layers(i).units();
    for (const auto& [suffix, shape] :
         {std::pair<std::string, std::vector<uint64_t>>{"weight", {units, fan_in}},
          std::pair<std::string, std::vector<uint64_t>>{"bias", {units}}}) {
      const std::string name = absl::StrCat(2 * i, ".", suffix);
      auto it = by_name.find(name);
      if (it == by_name.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("expected a tensor \"", name, "\" of shape ", ShapeText(shape), " (layer ",
                         i, " of model \"", spec.name(), "\"), found none"));
      }
      if (it->second->shape != shape || it->second->is_uint64_scalar) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor \"", name, "\": expected shape ", ShapeText(shape), " (layer ", i,
                         " of model \"", spec.name(), "\"), got ", ShapeText(it->second->shape)));
      }
      parameters.insert(parameters.end(), it->second->values.begin(), it->second->values.end());
      by_name.erase(it);
    }
    fan_in = units;
  }
  if (!by_name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected tensor \"", by_name.begin()->first, "\": model \"", spec.name(),
                     "\" has ", spec.layers_size(), " layers (tensors 0.weight ... ",
                     2 * (spec.layers_size() - 1), ".bias)"));
  }
  return parameters;
}

std::vector<NpyArray> TensorsFromStatistics(const model::RunningMeanStd& statistics) {
  const uint64_t d = static_cast<uint64_t>(statistics.input_dim());
  std::vector<NpyArray> arrays(3);
  arrays[0].name = "normalizer.mean";
  arrays[0].shape = {d};
  arrays[0].doubles = statistics.mean();
  arrays[1].name = "normalizer.var";
  arrays[1].shape = {d};
  arrays[1].doubles = statistics.var();
  arrays[2].name = "normalizer.count";
  arrays[2].doubles = {statistics.count()};
  for (NpyArray& a : arrays) a.is_float64 = true;
  return arrays;
}

absl::StatusOr<std::shared_ptr<const model::RunningMeanStd>> StatisticsFromTensors(
    const deltaserve::v1::ModelSpec& spec, const std::vector<NpyArray>& arrays) {
  const NpyArray* found[3] = {nullptr, nullptr, nullptr};
  const char* const names[3] = {"normalizer.mean", "normalizer.var", "normalizer.count"};
  for (const NpyArray& a : arrays) {
    for (int k = 0; k < 3; ++k) {
      if (a.name == names[k]) found[k] = &a;
    }
  }
  if (found[0] == nullptr && found[1] == nullptr && found[2] == nullptr) return nullptr;
  const uint64_t d = spec.input_dim();
  const std::vector<uint64_t> shapes[3] = {{d}, {d}, {}};
  for (int k = 0; k < 3; ++k) {
    if (found[k] == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected a tensor \"", names[k], "\" of shape ", ShapeText(shapes[k]),
                       " with the other normalizer tensors, found none"));
    }
    if (found[k]->is_uint64_scalar || found[k]->shape != shapes[k]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", names[k], "\": expected float values of shape ", ShapeText(shapes[k]),
          " (input_dim of model \"", spec.name(), "\"), got ", ShapeText(found[k]->shape)));
    }
  }
  // The server keeps its own clip and epsilon; these only make the values
  // checkable here.
  model::InputNormalizationConfig config;
  config.kind = model::InputNormalizationConfig::Kind::kRunningMeanStd;
  absl::StatusOr<model::RunningMeanStd> statistics = model::RunningMeanStd::FromStatistics(
      config, found[0]->doubles, found[1]->doubles, found[2]->doubles[0]);
  if (!statistics.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("normalizer tensors: ", statistics.status().message()));
  }
  return std::make_shared<const model::RunningMeanStd>(*std::move(statistics));
}

}  // namespace deltaserve::client::cli
