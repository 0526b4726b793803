// config.proto states each default as `(default: V)` on its field (the
// convention is described at the top of that file). These tests hold those
// comments to what FillDefaults fills in, in both directions, and the core's
// option structs to the same values, so that no copy can change alone.
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "deltaserve/proto/config_defaults.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/forward_batcher.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/tests/server/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

std::string ReadConfigProto() {
  std::ifstream file(DELTASERVE_CONFIG_PROTO_PATH);
  EXPECT_TRUE(file.good()) << "cannot open " << DELTASERVE_CONFIG_PROTO_PATH;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// "Message.field" → V for every field whose comment in `proto_text` says
// `(default: V)`. A field's comment is the `//` lines right above it and the
// `//` comment after it on its own line.
std::map<std::string, std::string> DocumentedDefaults(const std::string& proto_text) {
  static const std::regex kScope(R"(^\s*(message|enum)\s+(\w+)\s*\{\s*$)");
  static const std::regex kField(
      R"(^\s*(?:repeated\s+)?[\w.]+\s+(\w+)\s*=\s*\d+\s*;\s*(?://(.*))?$)");
  static const std::regex kDefault(R"(\(default: ([^)]*)\))");
  std::vector<std::pair<bool, std::string>> scopes;  // {is a message, name}
  std::map<std::string, std::string> defaults;
  std::string comment;
  std::istringstream lines(proto_text);
  for (std::string line; std::getline(lines, line);) {
    const absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(line);
    std::smatch match;
    if (absl::StartsWith(trimmed, "//")) {
      absl::StrAppend(&comment, trimmed.substr(2), "\n");
      continue;
    }
    if (std::regex_match(line, match, kScope)) {
      scopes.emplace_back(match[1] == "message", match[2].str());
    } else if (absl::StartsWith(trimmed, "}")) {
      if (!scopes.empty()) scopes.pop_back();
    } else if (std::regex_match(line, match, kField) && !scopes.empty() && scopes.back().first) {
      const std::string name = absl::StrCat(scopes.back().second, ".", match[1].str());
      const std::string text = comment + match[2].str();
      for (std::sregex_iterator it(text.begin(), text.end(), kDefault), end; it != end; ++it) {
        EXPECT_TRUE(defaults.emplace(name, (*it)[1].str()).second)
            << name << ": more than one (default: ...) in its comment";
      }
    }
    comment.clear();
  }
  return defaults;
}

// A field FillDefaults filled in: where, and the message holding its value.
struct Filled {
  const Message* message;
  const FieldDescriptor* field;
  std::string name() const {
    return absl::StrCat(field->containing_type()->name(), ".", field->name());
  }
};

// Every singular scalar or enum field that is unset (0, UNSPECIFIED) in
// `before` and set in `after`, recursing into messages and repeated messages.
void CollectFilled(const Message& before, const Message& after, std::vector<Filled>* filled) {
  const Reflection* b = before.GetReflection();
  const Reflection* a = after.GetReflection();
  const google::protobuf::Descriptor* type = after.GetDescriptor();
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    const bool is_message = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
    if (field->is_repeated()) {
      if (!is_message) continue;
      ASSERT_EQ(b->FieldSize(before, field), a->FieldSize(after, field)) << field->full_name();
      for (int j = 0; j < a->FieldSize(after, field); ++j) {
        CollectFilled(b->GetRepeatedMessage(before, field, j),
                      a->GetRepeatedMessage(after, field, j), filled);
      }
    } else if (is_message) {
      CollectFilled(b->GetMessage(before, field), a->GetMessage(after, field), filled);
    } else if (!b->HasField(before, field) && a->HasField(after, field)) {
      filled->push_back({&after, field});
    }
  }
}

// What FillDefaults fills into `filled` from configs with each optimizer
// kind (some defaults apply to one kind only). The configs stay alive in
// `configs`, which the results point into.
std::vector<Filled> FilledDefaults(std::vector<v1::ServerConfig>* configs) {
  const std::vector<std::string> texts = {"models {}", "models { optimizer { kind: MOMENTUM } }",
                                          "models { optimizer { kind: ADAM } }",
                                          "models { optimizer { kind: ADAMW } }"};
  configs->reserve(texts.size());
  std::vector<Filled> filled;
  for (const std::string& text : texts) {
    const v1::ServerConfig before = testing::ParseText<v1::ServerConfig>(text);
    configs->push_back(before);
    FillDefaults(&configs->back());
    CollectFilled(before, configs->back(), &filled);
  }
  return filled;
}

// Empty if `documented` (the V of `(default: V)`) is the value FillDefaults
// put in `f`; otherwise why not. V is an enum value name, a number, or a
// whole number followed by " MiB".
std::string Mismatch(const Filled& f, absl::string_view documented) {
  const Reflection* r = f.message->GetReflection();
  switch (f.field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_ENUM: {
      const std::string& name = r->GetEnum(*f.message, f.field)->name();
      return documented == name ? "" : absl::StrCat("FillDefaults fills in ", name);
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      const float value = r->GetFloat(*f.message, f.field);
      float parsed = 0;
      if (absl::SimpleAtof(documented, &parsed) && parsed == value) return "";
      return absl::StrCat("FillDefaults fills in ", value);
    }
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      const uint64_t value = f.field->cpp_type() == FieldDescriptor::CPPTYPE_UINT32
                                 ? r->GetUInt32(*f.message, f.field)
                                 : r->GetUInt64(*f.message, f.field);
      const uint64_t unit = absl::ConsumeSuffix(&documented, " MiB") ? (uint64_t{1} << 20) : 1;
      uint64_t parsed = 0;
      if (absl::SimpleAtoi(documented, &parsed) && parsed * unit == value) return "";
      return absl::StrCat("FillDefaults fills in ", value);
    }
    default:
      return absl::StrCat("a field of type ", f.field->cpp_type_name(),
                          " cannot have a documented default yet");
  }
}

TEST(ConfigDefaults, ConfigProtoDocumentsSomeDefaults) {
  const std::map<std::string, std::string> documented = DocumentedDefaults(ReadConfigProto());
  EXPECT_THAT(documented,
              ::testing::Contains(::testing::Pair("ServerConfig.max_message_bytes", "64 MiB")));
  EXPECT_THAT(documented,
              ::testing::Contains(::testing::Pair("PersistenceConfig.durability", "COMMIT")));
}

TEST(ConfigDefaults, EveryValueFillDefaultsFillsInIsTheOneConfigProtoDocuments) {
  const std::map<std::string, std::string> documented = DocumentedDefaults(ReadConfigProto());
  std::vector<v1::ServerConfig> configs;
  for (const Filled& f : FilledDefaults(&configs)) {
    const auto it = documented.find(f.name());
    if (it == documented.end()) {
      ADD_FAILURE() << f.name() << ": FillDefaults fills it in, but its comment in config.proto "
                    << "has no (default: ...)";
      continue;
    }
    EXPECT_EQ(Mismatch(f, it->second), "")
        << f.name() << ": config.proto says (default: " << it->second << ")";
  }
}

TEST(ConfigDefaults, EveryDefaultConfigProtoDocumentsIsFilledIn) {
  std::vector<v1::ServerConfig> configs;
  std::map<std::string, int> filled;
  for (const Filled& f : FilledDefaults(&configs)) ++filled[f.name()];
  for (const auto& [name, value] : DocumentedDefaults(ReadConfigProto())) {
    EXPECT_GT(filled[name], 0) << name << ": config.proto says (default: " << value
                               << "), but FillDefaults leaves it 0";
  }
}

// The option structs' initialisers are the same defaults: a Trainer built
// from TrainerOptions{} behaves as one from an empty ModelSpec.
TEST(ConfigDefaults, OptionStructsStartFromTheConfigDefaults) {
  v1::ServerConfig config = testing::ParseText<v1::ServerConfig>(
      R"pb(models {
             name: "m"
             input_dim: 1
             layers { units: 1 activation: ACTIVATION_IDENTITY }
           })pb");
  FillDefaults(&config);
  const v1::ModelSpec& spec = config.models(0);

  absl::StatusOr<TrainerOptions> trainer = TrainerOptionsFromProto(spec);
  ASSERT_TRUE(trainer.ok()) << trainer.status();
  const TrainerOptions trainer_defaults;
  EXPECT_EQ(trainer_defaults.samples_per_step, trainer->samples_per_step);
  EXPECT_EQ(trainer_defaults.queue_capacity, trainer->queue_capacity);
  EXPECT_EQ(trainer_defaults.max_request_rows, trainer->max_request_rows);

  absl::StatusOr<PersistenceOptions> persistence =
      PersistenceOptionsFromProto(config, spec, "/state");
  ASSERT_TRUE(persistence.ok()) << persistence.status();
  const PersistenceOptions persistence_defaults;
  EXPECT_EQ(persistence_defaults.durability, persistence->durability);
  EXPECT_EQ(persistence_defaults.sync_interval, persistence->sync_interval);
  EXPECT_EQ(persistence_defaults.checkpoint_every_steps, persistence->checkpoint_every_steps);
  EXPECT_EQ(persistence_defaults.checkpoint_every, persistence->checkpoint_every);
  EXPECT_EQ(persistence_defaults.keep_checkpoints, persistence->keep_checkpoints);

  absl::StatusOr<ForwardBatchingOptions> batching = ForwardBatchingOptionsFromProto(spec);
  ASSERT_TRUE(batching.ok()) << batching.status();
  const ForwardBatchingOptions batching_defaults;
  EXPECT_EQ(batching_defaults.max_batch_rows, batching->max_batch_rows);
  EXPECT_EQ(batching_defaults.max_queue_delay, batching->max_queue_delay);
  EXPECT_EQ(batching_defaults.min_batch_macs, batching->min_batch_macs);
}

}  // namespace
}  // namespace deltaserve::server
