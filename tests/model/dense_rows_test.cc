#include "deltaserve/model/dense_rows.h"

#include <cmath>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace deltaserve::model {

// Test names and failures show a kernel by its name (found by ADL, so here
// and not in the unnamed namespace).
void PrintTo(const DenseRowsKernel& kernel, std::ostream* os) { *os << kernel.name; }

namespace {

struct Layer {
  int fan_in;
  int units;
  std::vector<float> w;  // [units × fan_in] row-major
  std::vector<float> b;
};

Layer RandomLayer(int fan_in, int units, uint32_t seed) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Layer layer{fan_in, units, std::vector<float>(static_cast<size_t>(fan_in) * units), {}};
  for (float& v : layer.w) v = u(engine);
  layer.b.resize(static_cast<size_t>(units));
  for (float& v : layer.b) v = u(engine);
  return layer;
}

std::vector<float> RandomRows(int rows, int width, uint32_t seed) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> a(static_cast<size_t>(rows) * width);
  for (float& v : a) v = u(engine);
  return a;
}

// Z for `rows` rows of `a` (stride fan_in) into a [rows × units] buffer, by
// `kernel` (DenseRows unless given).
std::vector<float> Dense(const Layer& layer, const float* a, int rows,
                         DenseRowsFn* kernel = &DenseRows) {
  std::vector<float> z(static_cast<size_t>(rows) * layer.units, NAN);
  kernel(a, layer.fan_in, rows, layer.w.data(), layer.b.data(), layer.fan_in, layer.units, z.data(),
         layer.units);
  return z;
}

bool SameBits(const float* x, const float* y, size_t n) {
  return std::memcmp(x, y, n * sizeof(float)) == 0;
}

// Shapes around every boundary the kernel has: fewer than one lane group of
// inputs, an exact multiple, a remainder; unit counts below, at and above the
// unit tiles; widths whose weights exceed one cache block (several blocks of
// units); row counts below, at and above a row tile.
const int kFanIns[] = {1, 3, 7, 8, 9, 16, 31, 64, 100, 5000};
const int kUnits[] = {1, 2, 3, 7, 8, 9, 17, 20};
const int kRows[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 17};

// Every copy of the kernel this CPU runs (dense_rows.h) is held to the
// contract, not only the one DenseRows picked.
class DenseRowsKernelTest : public ::testing::TestWithParam<DenseRowsKernel> {};

INSTANTIATE_TEST_SUITE_P(ThisCpu, DenseRowsKernelTest, ::testing::ValuesIn(DenseRowsKernels()),
                         [](const ::testing::TestParamInfo<DenseRowsKernel>& info) {
                           std::string name = info.param.name;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

TEST_P(DenseRowsKernelTest, ComputesTheAffineMapOfEachRow) {
  DenseRowsFn* const kernel = GetParam().run;
  uint32_t seed = 1;
  for (int fan_in : kFanIns) {
    for (int units : kUnits) {
      const Layer layer = RandomLayer(fan_in, units, seed++);
      for (int rows : kRows) {
        const std::vector<float> a = RandomRows(rows, fan_in, seed++);
        const std::vector<float> z = Dense(layer, a.data(), rows, kernel);
        for (int r = 0; r < rows; ++r) {
          for (int j = 0; j < units; ++j) {
            double expected = layer.b[j];
            double magnitude = std::abs(layer.b[j]);
            for (int k = 0; k < fan_in; ++k) {
              const double term = static_cast<double>(a[r * fan_in + k]) * layer.w[j * fan_in + k];
              expected += term;
              magnitude += std::abs(term);
            }
            EXPECT_NEAR(z[r * units + j], expected, 1e-6 * magnitude + 1e-7)
                << "fan_in " << fan_in << ", units " << units << ", rows " << rows << ", row " << r
                << ", unit " << j;
          }
        }
      }
    }
  }
}

// The contract: a row's outputs are the same bits computed alone, in a tile
// with others, at any position, from any (misaligned) address.
TEST_P(DenseRowsKernelTest, EachRowGetsTheSameBitsWhateverElseIsComputed) {
  DenseRowsFn* const kernel = GetParam().run;
  uint32_t seed = 100;
  for (int fan_in : kFanIns) {
    for (int units : kUnits) {
      const Layer layer = RandomLayer(fan_in, units, seed++);
      constexpr int kAll = 19;
      const std::vector<float> a = RandomRows(kAll, fan_in, seed++);
      const std::vector<float> all = Dense(layer, a.data(), kAll, kernel);
      for (int start = 0; start < kAll; ++start) {
        for (int rows : kRows) {
          if (start + rows > kAll) continue;
          // The rows copied one float past an aligned start, so their
          // addresses differ from those in `a`.
          std::vector<float> shifted(static_cast<size_t>(rows) * fan_in + 1);
          std::memcpy(shifted.data() + 1, a.data() + static_cast<size_t>(start) * fan_in,
                      static_cast<size_t>(rows) * fan_in * sizeof(float));
          const std::vector<float> part = Dense(layer, shifted.data() + 1, rows, kernel);
          EXPECT_TRUE(
              SameBits(part.data(), all.data() + static_cast<size_t>(start) * units, part.size()))
              << "fan_in " << fan_in << ", units " << units << ", rows " << start << ".."
              << start + rows;
        }
      }
    }
  }
}

// DenseRows runs the first copy listed; the build's own copy is always there.
// (It tells copies apart where the build's flags are narrower than the CPU:
// isa_builds' x86-64-v2 and -v3 builds, where the first is a wider copy whose
// fused sums differ in the last bits from the build's own.)
TEST(DenseRows, RunsTheFirstKernelListed) {
  const std::vector<DenseRowsKernel>& kernels = DenseRowsKernels();
  ASSERT_FALSE(kernels.empty());
  int builds = 0;
  for (const DenseRowsKernel& k : kernels) builds += std::string(k.name) == "build";
  EXPECT_EQ(builds, 1);
  const Layer layer = RandomLayer(100, 20, 3);
  const std::vector<float> a = RandomRows(9, 100, 4);
  const std::vector<float> picked = Dense(layer, a.data(), 9);
  const std::vector<float> first = Dense(layer, a.data(), 9, kernels.front().run);
  EXPECT_TRUE(SameBits(picked.data(), first.data(), picked.size())) << kernels.front().name;
}

TEST(DenseRows, HonoursStridesAndWritesNothingElse) {
  const Layer layer = RandomLayer(9, 3, 7);
  const std::vector<float> dense = RandomRows(5, 9, 8);
  // The same rows with 4 floats of padding after each, and an output with 2.
  std::vector<float> padded(5 * 13, 0.0f);
  for (int r = 0; r < 5; ++r) std::memcpy(&padded[r * 13], &dense[r * 9], 9 * sizeof(float));
  std::vector<float> z(5 * 5, -7.0f);
  DenseRows(padded.data(), 13, 5, layer.w.data(), layer.b.data(), 9, 3, z.data(), 5);
  const std::vector<float> expected = Dense(layer, dense.data(), 5);
  for (int r = 0; r < 5; ++r) {
    EXPECT_TRUE(SameBits(&z[r * 5], &expected[r * 3], 3)) << "row " << r;
    EXPECT_EQ(z[r * 5 + 3], -7.0f);
    EXPECT_EQ(z[r * 5 + 4], -7.0f);
  }
}

TEST(DenseRows, ZeroRowsWritesNothing) {
  const Layer layer = RandomLayer(4, 2, 9);
  float z[2] = {-7.0f, -7.0f};
  DenseRows(nullptr, 4, 0, layer.w.data(), layer.b.data(), 4, 2, z, 2);
  EXPECT_EQ(z[0], -7.0f);
  EXPECT_EQ(z[1], -7.0f);
}

}  // namespace
}  // namespace deltaserve::model
