// The live page's HTTP API (server/web/web_api.h) on a History filled here,
// called directly and through the metrics endpoint (civetweb on loopback,
// OS-picked port), including hostile query strings and raw requests.
#include "deltaserve/server/web/web_api.h"

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "deltaserve/server/core/history.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server::web {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr int64_t kNow = 1700000000000;

class WebApiTest : public ::testing::Test {
 protected:
  WebApiTest() {
    history_.Record("cartpole", "loss", kNow - 3000, 0.5);
    history_.Record("cartpole", "loss", kNow - 2000, 0.25);
    history_.Record("cartpole", "client/episode_return", kNow - 2500, 21.0);
    history_.Record("pendulum", "loss", kNow - 1000, 1.5);
    options_.history = &history_;
    options_.now_ms = [] { return kNow; };
  }

  HttpResponse Get(std::string path, std::string query = "",
                   std::optional<std::string> authorization = std::nullopt) {
    HttpRequest request;
    request.method = "GET";
    request.path = path;
    request.query = query;
    if (authorization.has_value()) request.authorization = *authorization;
    return HandleWebRequest(options_, request);
  }

  History history_;
  WebOptions options_;
};

// A refusal is one line of text that says what was expected.
void ExpectOneLineError(const HttpResponse& response, int status) {
  EXPECT_EQ(response.status, status) << response.body;
  EXPECT_THAT(response.content_type, StartsWith("text/plain"));
  ASSERT_FALSE(response.body.empty());
  EXPECT_EQ(response.body.find('\n'), response.body.size() - 1) << response.body;
  EXPECT_THAT(response.body, HasSubstr("expected"));
}

TEST_F(WebApiTest, ModelsListsTheHistorysModels) {
  const HttpResponse response = Get("/api/models");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_EQ(response.body, R"({"models":["cartpole","pendulum"]})");
}

TEST_F(WebApiTest, HistoryHasThePointsNewerThanSinceOldestFirst) {
  HttpResponse all = Get("/api/history", "model=cartpole");
  EXPECT_EQ(all.status, 200);
  EXPECT_EQ(all.body,
            absl::StrCat(R"({"model":"cartpole","now_ms":)", kNow,
                         R"(,"series":{"client/episode_return":[[)", kNow - 2500,
                         R"(,21]],"loss":[[)", kNow - 3000, ",0.5],[", kNow - 2000, ",0.25]]}}"));
  // since is exclusive.
  HttpResponse newer = Get("/api/history", absl::StrCat("model=cartpole&since=", kNow - 3000));
  EXPECT_EQ(newer.status, 200);
  EXPECT_THAT(newer.body, HasSubstr(absl::StrCat(R"("loss":[[)", kNow - 2000, ",0.25]]")));
  EXPECT_THAT(newer.body, Not(HasSubstr("0.5")));
  // Percent-encoded parameters are decoded.
  EXPECT_EQ(Get("/api/history", "model=%63artpole&since=-1").body, all.body);
}

TEST_F(WebApiTest, CsvHasAHeaderAndOneRowPerPoint) {
  const HttpResponse response = Get("/api/history.csv", "model=pendulum");
  EXPECT_EQ(response.status, 200);
  EXPECT_THAT(response.content_type, StartsWith("text/csv"));
  EXPECT_EQ(response.body, absl::StrCat("unix_ms,series,value\n", kNow - 1000, ",loss,1.5\n"));
}

TEST(WebEncoding, NonFiniteValuesAreNullInJsonAndEmptyInCsv) {
  const std::map<std::string, std::vector<HistoryPoint>> series = {
      {"x,\"y\"",
       {{5, std::numeric_limits<double>::quiet_NaN()},
        {6, -std::numeric_limits<double>::infinity()},
        {7, 0.1}}}};
  EXPECT_EQ(HistoryJson("odd", 9, series),
            R"({"model":"odd","now_ms":9,"series":{"x,\"y\"":[[5,null],[6,null],[7,0.1]]}})");
  EXPECT_EQ(HistoryCsv(series),
            "unix_ms,series,value\n5,\"x,\"\"y\"\"\",\n6,\"x,\"\"y\"\"\",\n"
            "7,\"x,\"\"y\"\"\",0.1\n");
}

TEST(WebEncoding, NamesAreEscapedToAsciiJson) {
  EXPECT_EQ(ModelsJson({std::string("m\x01\xff\"\\", 5), "b"}),
            R"({"models":["m\u0001\u00ff\"\\","b"]})");
}

TEST_F(WebApiTest, BadQueriesGetOneLineErrorsSayingWhatWasExpected) {
  ExpectOneLineError(Get("/api/history", "model=nosuch"), 404);
  ExpectOneLineError(Get("/api/history.csv", "model=nosuch"), 404);
  ExpectOneLineError(Get("/api/history", ""), 400);
  ExpectOneLineError(Get("/api/history", "model="), 400);
  ExpectOneLineError(Get("/api/history", "model=cartpole&since=abc"), 400);
  ExpectOneLineError(Get("/api/history", "model=cartpole&since=1.5"), 400);
  ExpectOneLineError(Get("/api/history", "model=cartpole&since=99999999999999999999"), 400);
  ExpectOneLineError(Get("/api/history", "model=cart%zzpole"), 400);
  ExpectOneLineError(Get("/api/history", "model=cartpole%"), 400);
  ExpectOneLineError(Get("/api/history", "model=cartpole%4"), 400);
  ExpectOneLineError(Get("/api/history", "model=cartpole&model=pendulum"), 400);
  ExpectOneLineError(Get("/api/history", "model=cartpole&colour=red"), 400);
  ExpectOneLineError(Get("/api/history.csv", "model=cartpole&since=1"), 400);
  ExpectOneLineError(Get("/api/models", "x=1"), 400);
  ExpectOneLineError(Get("/api/history", std::string(5000, 'a')), 400);
  ExpectOneLineError(Get("/nosuch"), 404);
  ExpectOneLineError(Get("/api/nosuch"), 404);
  ExpectOneLineError(Get("/static/nosuch.js"), 404);
  ExpectOneLineError(Get("/static/index.html"), 404);
  HttpRequest post;
  post.method = "POST";
  post.path = "/api/models";
  ExpectOneLineError(HandleWebRequest(options_, post), 405);
}

TEST_F(WebApiTest, ThePageAndItsFilesAreBuiltIn) {
  const HttpResponse page = Get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.content_type, StartsWith("text/html"));
  EXPECT_THAT(page.body, HasSubstr(R"(<script src="static/page.js">)"));
  EXPECT_THAT(page.body, HasSubstr(R"(<script src="static/dygraph.min.js">)"));
  const HttpResponse dygraphs = Get("/static/dygraph.min.js");
  EXPECT_EQ(dygraphs.status, 200);
  EXPECT_THAT(dygraphs.content_type, StartsWith("text/javascript"));
  EXPECT_THAT(dygraphs.body, HasSubstr("Dygraph"));
  EXPECT_GT(dygraphs.body.size(), 50000u);
  EXPECT_EQ(Get("/static/dygraph.min.css").status, 200);
  EXPECT_EQ(Get("/static/page.css").status, 200);
  const HttpResponse script = Get("/static/page.js");
  EXPECT_EQ(script.status, 200);
  EXPECT_THAT(script.body, HasSubstr("api/history"));
  // Nothing the page loads comes from elsewhere.
  for (const HttpResponse* file : {&page, &script}) {
    EXPECT_THAT(file->body, Not(HasSubstr("http://")));
    EXPECT_THAT(file->body, Not(HasSubstr("https://")));
  }
}

TEST_F(WebApiTest, WithAuthTheApiAndThePageNeedAnObserverToken) {
  options_.authorize = [](std::optional<absl::string_view> authorization) {
    if (!authorization.has_value()) return absl::UnauthenticatedError("missing");
    if (*authorization == "Bearer observer") return absl::OkStatus();
    if (*authorization == "Bearer nobody") return absl::PermissionDeniedError("role");
    return absl::UnauthenticatedError("unknown token");
  };
  ExpectOneLineError(Get("/api/models"), 401);
  ExpectOneLineError(Get("/api/history", "model=cartpole"), 401);
  ExpectOneLineError(Get("/api/history.csv", "model=cartpole", "Bearer wrong"), 401);
  ExpectOneLineError(Get("/api/models", "", "Bearer nobody"), 403);
  // The API takes the token only as the header.
  ExpectOneLineError(Get("/api/models", "token=observer"), 401);
  EXPECT_EQ(Get("/api/models", "", "Bearer observer").status, 200);
  EXPECT_EQ(Get("/api/history", "model=cartpole", "Bearer observer").status, 200);
  ExpectOneLineError(Get("/"), 401);
  ExpectOneLineError(Get("/", "token=wrong"), 401);
  ExpectOneLineError(Get("/", "token=nobody"), 403);
  EXPECT_EQ(Get("/", "token=observer").status, 200);
  EXPECT_EQ(Get("/", "", "Bearer observer").status, 200);
  // The page's code is public (the same built-in bytes for everyone).
  EXPECT_EQ(Get("/static/page.js").status, 200);
}

// Random queries built from the characters that break parsers: every answer
// is a 200 or a one-line 400 / 404, never a crash.
TEST_F(WebApiTest, HostileQueryStringsGetAnAnswerNeverACrash) {
  const std::vector<std::string> pieces = {"model",
                                           "since",
                                           "token",
                                           "=",
                                           "&",
                                           "%",
                                           "%0",
                                           "%00",
                                           "%zz",
                                           "%ff",
                                           "%25",
                                           "+",
                                           "cartpole",
                                           "pendulum",
                                           "-1",
                                           "9223372036854775807",
                                           "-9223372036854775808",
                                           "1e3",
                                           "0x10",
                                           " ",
                                           "\xff",
                                           std::string(1, '\0'),
                                           "\r\n",
                                           "\"",
                                           "<script>",
                                           "..",
                                           "/",
                                           ";",
                                           "#",
                                           "?",
                                           std::string(300, 'A')};
  const std::vector<std::string> paths = {"/api/history", "/api/history.csv", "/api/models", "/",
                                          "/static/page.js"};
  std::mt19937 random(7);
  for (int i = 0; i < 3000; ++i) {
    std::string query;
    const int n = static_cast<int>(random() % 12);
    for (int j = 0; j < n; ++j) query += pieces[random() % pieces.size()];
    if (i % 100 == 0) query = std::string(100000, "%&="[i % 3]);
    const std::string& path = paths[random() % paths.size()];
    const HttpResponse response = Get(path, query);
    SCOPED_TRACE(absl::StrCat(path, "?", query));
    if (response.status == 200) {
      if (absl::StartsWith(path, "/api/") && path != "/api/history.csv") {
        EXPECT_EQ(response.content_type, "application/json");
        for (const char c : response.body) {
          ASSERT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c);
        }
      }
    } else {
      ExpectOneLineError(response, response.status == 404 ? 404 : 400);
    }
  }
}

// Through the endpoint: /metrics as before, the handler for the rest.
TEST(MetricsEndpoint, ServesMetricsAndPassesTheRestToTheHandler) {
  auto created = ServerMetrics::Create({/*listen_address=*/"127.0.0.1:0"});
  ASSERT_TRUE(created.ok()) << created.status();
  ServerMetrics& metrics = **created;
  metrics.ForModel("cartpole");
  // No handler yet: 404 for everything but /metrics.
  auto before = testing::HttpGet(metrics.port(), "/api/models");
  ASSERT_TRUE(before.has_value());
  EXPECT_THAT(before->first, HasSubstr("404"));

  History history;
  history.Record("cartpole", "loss", kNow, 0.5);
  WebOptions options;
  options.history = &history;
  metrics.SetHttpHandler(MakeWebHandler(options));
  auto models = testing::HttpGet(metrics.port(), "/api/models");
  ASSERT_TRUE(models.has_value());
  EXPECT_THAT(models->first, HasSubstr("200"));
  EXPECT_EQ(models->second, R"({"models":["cartpole"]})");
  auto series = testing::HttpGet(metrics.port(), "/api/history?model=cartpole&since=0");
  ASSERT_TRUE(series.has_value());
  EXPECT_THAT(series->second, HasSubstr(absl::StrCat("[[", kNow, ",0.5]]")));
  auto scrape = testing::HttpGet(metrics.port(), "/metrics");
  ASSERT_TRUE(scrape.has_value());
  EXPECT_THAT(scrape->first, HasSubstr("200"));
  EXPECT_EQ(testing::Sample(scrape->second, "deltaserve_model_version", {{"model", "cartpole"}}),
            0.0);
  auto unknown = testing::HttpGet(metrics.port(), "/api/history?model=nosuch");
  ASSERT_TRUE(unknown.has_value());
  EXPECT_THAT(unknown->first, HasSubstr("404"));
  EXPECT_EQ(unknown->second, "unknown model: expected a name /api/models lists\n");

  // Hostile raw requests: a NUL, bytes above 0x7f, a huge URL, bad escapes,
  // a path that climbs. Whatever civetweb or the handler answers, the
  // endpoint keeps serving.
  const std::vector<std::string> hostile = {
      std::string("/api/history?model=cart\0pole", 28),
      "/api/history?model=%00%ff%zz&since=%2d1",
      "/api/history?model=\xff\xfe",
      absl::StrCat("/api/history?model=", std::string(200000, 'x')),
      "/static/../../etc/passwd",
      "/%2e%2e/%2e%2e/etc/passwd",
      "/api/history.csv?model=cartpole&model=cartpole"};
  for (const std::string& path : hostile) {
    auto response = testing::HttpGet(metrics.port(), path);
    if (response.has_value()) {
      EXPECT_THAT(response->first, Not(HasSubstr(" 200 "))) << path.substr(0, 80);
      EXPECT_THAT(response->second, Not(HasSubstr("root:")));
    }
  }
  auto after = testing::HttpGet(metrics.port(), "/api/models");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->second, R"({"models":["cartpole"]})");

  // Cleared: the handler (and the history it reads) may go.
  metrics.SetHttpHandler(nullptr);
  auto cleared = testing::HttpGet(metrics.port(), "/api/models");
  ASSERT_TRUE(cleared.has_value());
  EXPECT_THAT(cleared->first, HasSubstr("404"));
}

}  // namespace
}  // namespace deltaserve::server::web
