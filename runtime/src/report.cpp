#include <pnn/runtime/report.hpp>

#include <pnn/error.hpp>
#include <pnn/experiments/summary.hpp>
#include <pnn/training/records.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

extern char** environ;

namespace fs = std::filesystem;

namespace pnn::runtime {

using pnn::run_summary;

namespace {

[[noreturn]] void fail(error_code code, const std::string& msg) {
  throw pnn::error(code, msg);
}

/// A CSV file with a header line: columns by name. Quoted fields ("a,b") are kept
/// whole, quotes removed.
struct csv {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  int column(const std::string& name) const {
    auto i = std::find(header.begin(), header.end(), name);
    return i == header.end() ? -1 : static_cast<int>(i - header.begin());
  }
};

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::string field;
  bool quoted = false;
  for (char c : line) {
    if (c == '"')
      quoted = !quoted;
    else if (c == ',' && !quoted) {
      out.push_back(field);
      field.clear();
    } else if (c != '\r')
      field += c;
  }
  out.push_back(field);
  return out;
}

csv read_csv(const fs::path& file) {
  csv c;
  std::ifstream in(file);
  if (!in)
    return c;
  std::string line;
  if (std::getline(in, line))
    c.header = split_csv_line(line);
  while (std::getline(in, line))
    if (!line.empty())
      c.rows.push_back(split_csv_line(line));
  return c;
}

/// A string as a gnuplot string literal (double quotes, escaped).
std::string gp_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string fixed(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

/// gnuplot's y range around the data [lo, hi] with some room, within [floor, ceil]:
/// 0.87 against 0.88 must not look equal on a 0..1 axis.
std::string yrange_around(double lo, double hi, double floor = 0, double ceil = 1) {
  if (!(lo <= hi) || !std::isfinite(lo) || !std::isfinite(hi)) {
    lo = floor;
    hi = ceil;
  }
  const double pad = std::max(0.005, (hi - lo) * 0.15);
  return "set yrange [" + fixed(std::max(floor, lo - pad), 3) + ":"
    + fixed(std::min(ceil, hi + pad), 3) + "]\n";
}

/// Mean and sample standard deviation of `values` (0 for fewer than two).
std::pair<double, double> mean_std(const std::vector<double>& values) {
  if (values.empty())
    return {0, 0};
  double sum = 0;
  for (double v : values)
    sum += v;
  const double mean = sum / static_cast<double>(values.size());
  if (values.size() < 2)
    return {mean, 0};
  double sq = 0;
  for (double v : values)
    sq += (v - mean) * (v - mean);
  return {mean, std::sqrt(sq / static_cast<double>(values.size() - 1))};
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
    case '&':
      out += "&amp;";
      break;
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    case '"':
      out += "&quot;";
      break;
    default:
      out += c;
    }
  }
  return out;
}

/// A table for both report.md and report.html.
struct table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  std::string markdown() const {
    std::ostringstream out;
    auto line = [&](const std::vector<std::string>& cells) {
      out << '|';
      for (const auto& c : cells)
        out << ' ' << c << " |";
      out << '\n';
    };
    line(header);
    out << '|';
    for (size_t i = 0; i < header.size(); ++i)
      out << (i == 0 ? " --- |" : " ---: |");
    out << '\n';
    for (const auto& r : rows)
      line(r);
    return out.str();
  }

  std::string html() const {
    std::ostringstream out;
    out << "<table>\n<tr>";
    for (const auto& h : header)
      out << "<th>" << html_escape(h) << "</th>";
    out << "</tr>\n";
    for (const auto& r : rows) {
      out << "<tr>";
      for (size_t i = 0; i < r.size(); ++i)
        out << (i == 0 ? "<td>" : "<td class=\"n\">") << html_escape(r[i]) << "</td>";
      out << "</tr>\n";
    }
    out << "</table>\n";
    return out.str();
  }
};

/// The report being assembled: sections of text, tables and plots; the gnuplot
/// script that draws the plots.
class report_builder {
public:
  explicit report_builder(fs::path dir) : dir_(std::move(dir)), data_(dir_ / "report") {
    pnn::ensure_directory(data_);
    script_ << "# Written by pnn-node report; run from this folder: gnuplot report.gp\n";
  }

  /// Writes `content` to report/<name> (a data file for the script).
  void data(const std::string& name, const std::string& content) {
    pnn::write_file_atomic(data_ / name, content);
  }

  /// Adds a plot: `commands` draw it (the output file is set here).
  void plot(const std::string& name, const std::string& caption, const std::string& commands) {
    // Each plot starts from gnuplot's defaults plus pnn's style.
    script_ << "\n# " << caption << "\nreset session\n"
            << "set terminal pngcairo size 900,540 noenhanced font \"sans,10\"\n"
            << "set datafile separator \",\"\n"
            << "set grid ytics lc rgb \"#dddddd\"\n"
            << "set key outside right top\n"
            << "set output " << gp_string(name + ".png") << "\n"
            << commands << "\nunset output\n";
    plots_.push_back(data_ / (name + ".png"));
    md_ << "![" << caption << "](report/" << name << ".png)\n\n*" << caption << "*\n\n";
    html_ << "<figure><img src=\"report/" << html_escape(name) << ".png\" alt=\""
          << html_escape(caption) << "\"><figcaption>" << html_escape(caption)
          << "</figcaption></figure>\n";
  }

  void heading(const std::string& text) {
    md_ << "## " << text << "\n\n";
    html_ << "<h2>" << html_escape(text) << "</h2>\n";
  }

  void paragraph(const std::string& text) {
    md_ << text << "\n\n";
    html_ << "<p>" << html_escape(text) << "</p>\n";
  }

  void add(const table& t) {
    md_ << t.markdown() << "\n";
    html_ << t.html();
  }

  /// Runs gnuplot on the script, checks every plot was drawn, writes report.md
  /// and report.html.
  report_files finish(const std::string& title, const std::string& gnuplot) {
    pnn::write_file_atomic(data_ / "report.gp", script_.str());
    run_gnuplot(gnuplot);
    for (const auto& p : plots_) {
      std::error_code ec;
      if (!fs::exists(p, ec) || fs::file_size(p, ec) == 0)
        fail(error_code::io_error, p.string() + ": gnuplot wrote no image (see report/report.gp)");
    }
    report_files files;
    files.markdown = dir_ / "report.md";
    files.html = dir_ / "report.html";
    files.plots = plots_;
    pnn::write_file_atomic(files.markdown, "# " + title + "\n\n" + md_.str());
    pnn::write_file_atomic(
      files.html,
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html_escape(title)
        + "</title>\n<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
          "padding:3px 8px}td.n{text-align:right}img{max-width:100%}figure{margin:1em 0}"
          "figcaption{color:#555}</style></head><body>\n<h1>"
        + html_escape(title) + "</h1>\n" + html_.str() + "</body></html>\n");
    return files;
  }

private:
  void run_gnuplot(const std::string& gnuplot) {
    // gnuplot runs in report/ (the script names its files relative to it); its
    // stderr goes to report/gnuplot.log.
    const auto log = data_ / "gnuplot.log";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    // No posix_spawn_file_actions_addchdir_np on every libc: the script cds itself.
    const std::string script = "cd " + gp_string(data_.string()) + "; load \"report.gp\"";
    const char* argv[] = {gnuplot.c_str(), "-e", script.c_str(), nullptr};
    pid_t pid = 0;
    int rc = posix_spawnp(&pid, gnuplot.c_str(), &actions, nullptr, const_cast<char* const*>(argv),
                          environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
      fail(error_code::io_error,
           "cannot run " + gnuplot + " (" + std::strerror(rc)
             + "): the report's plots need gnuplot (apt-get install gnuplot-nox)");
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::string first;
      std::ifstream in(log);
      for (std::string line; std::getline(in, line);)
        if (!line.empty())
          first = line; // gnuplot's last non-empty line says what went wrong
      fail(error_code::io_error,
           gnuplot + " failed on " + (data_ / "report.gp").string() + ": "
             + (first.empty() ? "no message" : first));
    }
  }

  fs::path dir_, data_;
  std::ostringstream script_, md_, html_;
  std::vector<fs::path> plots_;
};

/// A figure of a summary for tables and plots: 0 when absent or not finite.
double figure(const std::optional<double>& v) {
  return v && std::isfinite(*v) ? *v : 0;
}

std::string run_facts(const run_summary& s) {
  std::ostringstream out;
  out << s.command << " on " << (s.dataset.empty() ? "?" : s.dataset) << ": wall time "
      << fixed(s.wall_seconds, 1) << " s, mean CPU utilisation "
      << fixed(100 * s.cpu_utilization_mean, 1) << "%";
  if (s.cores)
    out << ", " << *s.cores << " core(s)";
  if (s.mode)
    out << ", " << *s.mode;
  if (s.slots)
    out << ", " << *s.slots << " slot(s)";
  if (s.workers)
    out << ", " << *s.workers << " worker(s)";
  out << ".";
  return out.str();
}

/// CPU utilisation over the run, from cpu.csv.
void cpu_plot(report_builder& r, const fs::path& dir, const run_summary& s) {
  auto cpu = read_csv(dir / "cpu.csv");
  if (cpu.rows.empty())
    return;
  r.data("cpu.csv", pnn::read_text_file(dir / "cpu.csv"));
  const double cores = static_cast<double>(s.cores.value_or(1));
  r.plot("cpu", "CPU utilisation over the run",
         "set xlabel \"seconds since the start\"\nset ylabel \"machine CPU %\"\n"
         "set y2label \"cores busy with pnn\"\nset yrange [0:105]\nset y2range [0:"
           + fixed(cores * 1.05, 2)
           + "]\nset ytics nomirror\nset y2tics\n"
             "plot \"cpu.csv\" using 1:($2*100) skip 1 with lines lw 2 title \"machine CPU %\", "
             "\"cpu.csv\" using 1:3 skip 1 axes x1y2 with lines lw 1 dt 2 title \"pnn (cores)\"");
}

/// A configuration of a K-fold grid (model/scheduler in runs without other grid
/// fields, and in files written before grids).
struct cell_key {
  std::string model, scheduler, config;
  bool operator<(const cell_key& o) const {
    return config < o.config;
  }
  std::string label() const {
    return config;
  }
  /// Table cells that name it: model and scheduler, or the whole name in a grid.
  std::vector<std::string> cells(bool grid) const {
    return grid ? std::vector<std::string>{config} : std::vector<std::string>{model, scheduler};
  }
};

/// Whether a run's configurations vary more than model and scheduler.
bool is_grid(const run_summary& s) {
  for (const auto& c : s.table)
    if (c.config_name() != c.model + "/" + c.scheduler)
      return true;
  return false;
}

/// Table header cells naming a configuration (see cell_key::cells).
std::vector<std::string> key_header(bool grid) {
  return grid ? std::vector<std::string>{"configuration"}
              : std::vector<std::string>{"model", "scheduler"};
}

template <class... Rest>
std::vector<std::string> row(std::vector<std::string> first, Rest&&... rest) {
  (first.push_back(std::forward<Rest>(rest)), ...);
  return first;
}

/// A job's folder (summary "dir") inside the run's folder, or nothing when the file
/// names one outside it.
std::optional<fs::path> job_folder(const fs::path& run, const job_summary& j) {
  const fs::path rel = fs::path(j.folder()).lexically_normal();
  if (rel.empty() || rel.is_absolute() || *rel.begin() == "..")
    return std::nullopt;
  return run / rel;
}

/// Per (model, scheduler): first start to last end of its jobs, in seconds.
std::map<cell_key, double> spans(const run_summary& s) {
  std::map<cell_key, std::pair<double, double>> range;
  for (const auto& j : s.jobs) {
    if (!j.ok)
      continue;
    cell_key k{j.model, j.scheduler, j.config_name()};
    auto a = j.started_at, b = j.finished_at;
    auto it = range.find(k);
    if (it == range.end())
      range[k] = {a, b};
    else
      it->second = {std::min(it->second.first, a), std::max(it->second.second, b)};
  }
  std::map<cell_key, double> out;
  for (auto& [k, r] : range)
    out[k] = r.second - r.first;
  return out;
}

/// Validation accuracy and loss against epochs per configuration (mean ± std over
/// the folds that validated that epoch); a configuration pruning stopped ends where
/// it stopped, marked with a cross. Drawn when a run has more than one validated epoch.
void epoch_curves(report_builder& r, const run_summary& s, const std::vector<cell_key>& cells) {
  // configuration -> epoch -> the folds' values
  using curve = std::map<int64_t, std::vector<double>>;
  std::map<std::string, curve> accuracy, loss;
  for (const auto& j : s.jobs) {
    if (!j.ok || !j.more.contains("epochs") || !j.more["epochs"].is_array())
      continue;
    for (const auto& e : j.more["epochs"]) {
      if (!e.is_object() || !e.contains("epoch") || !e["epoch"].is_number_integer())
        continue;
      const auto epoch = e["epoch"].get<int64_t>();
      if (e.contains("val_accuracy") && e["val_accuracy"].is_number())
        accuracy[j.config_name()][epoch].push_back(e["val_accuracy"].get<double>());
      if (e.contains("val_loss") && e["val_loss"].is_number())
        loss[j.config_name()][epoch].push_back(e["val_loss"].get<double>());
    }
  }
  size_t longest = 0;
  for (const auto& [name, c] : accuracy)
    longest = std::max(longest, c.size());
  if (longest < 2)
    return;
  std::set<std::string> pruned;
  for (const auto& c : s.table)
    if (c.stopped_at_epoch)
      pruned.insert(c.config_name());
  // One data block per configuration (epoch,mean,std), in the table's order.
  auto blocks = [&](const std::map<std::string, curve>& curves, const std::string& file,
                    double& lo, double& hi, std::ostringstream& ends) {
    std::ostringstream dat;
    std::string plots;
    int block = 0;
    for (const auto& k : cells) {
      auto found = curves.find(k.config);
      if (found == curves.end())
        continue;
      for (const auto& [epoch, values] : found->second) {
        const auto [mean, sd] = mean_std(values);
        lo = std::min(lo, mean - sd);
        hi = std::max(hi, mean + sd);
        dat << epoch << "," << mean << "," << sd << "\n";
      }
      dat << "\n\n"; // the next configuration is the next data block
      if (pruned.count(k.config) && !found->second.empty())
        ends << found->second.rbegin()->first << ","
             << mean_std(found->second.rbegin()->second).first << "\n";
      plots += std::string(plots.empty() ? "plot " : ", ") + gp_string(file) + " index "
        + std::to_string(block++) + " using 1:2:3 with yerrorlines lw 1.5 pt 7 ps 0.5 title "
        + gp_string(k.label());
    }
    r.data(file, dat.str());
    return plots;
  };
  const std::string xtics = longest <= 20 ? "set xtics 1\n" : "";
  double lo = 1, hi = 0;
  std::ostringstream ends;
  auto plots = blocks(accuracy, "val_epochs.csv", lo, hi, ends);
  if (plots.empty())
    return; // no configuration of the table has a curve
  if (!ends.str().empty()) {
    r.data("pruned_ends.csv", ends.str());
    plots += ", \"pruned_ends.csv\" using 1:2 with points pt 2 ps 2 lw 2 lc rgb \"black\" "
             "title \"stopped by pruning\"";
  }
  r.heading("Validation per epoch");
  r.plot("val_epochs",
         "Validation accuracy per epoch and configuration (mean ± std over folds; a cross: where "
         "pruning stopped it)",
         "set xlabel \"epoch\"\nset ylabel \"validation accuracy\"\n" + yrange_around(lo, hi)
           + xtics + "set key outside right top font \",8\"\n" + plots);
  double loss_lo = 1e300, loss_hi = -1e300;
  std::ostringstream unused; // crosses only on the accuracy plot
  auto loss_plots = blocks(loss, "val_loss_epochs.csv", loss_lo, loss_hi, unused);
  if (!loss_plots.empty())
    r.plot("val_loss_epochs",
           "Validation loss per epoch and configuration (mean ± std over folds)",
           "set xlabel \"epoch\"\nset ylabel \"validation loss\"\n"
             + yrange_around(loss_lo, loss_hi, 0, 1e300) + xtics
             + "set key outside right top font \",8\"\n" + loss_plots);
}

/// Training loss against the job's own time, one line per job (a configuration's
/// folds share a colour), smoothed over 20 steps; from each job's steps.csv.
void train_loss_curves(report_builder& r, const fs::path& dir, const run_summary& s,
                       const std::vector<cell_key>& cells) {
  std::map<std::string, int> colour;
  for (const auto& k : cells)
    colour.emplace(k.config, static_cast<int>(colour.size()) + 1);
  std::ostringstream dat;
  std::string plots;
  std::set<std::string> titled;
  int block = 0;
  for (const auto& j : s.jobs) {
    const auto folder = job_folder(dir, j);
    if (!j.ok || !folder)
      continue;
    const auto steps = read_csv(*folder / "steps.csv");
    const auto time = std::find(steps.header.begin(), steps.header.end(), "time");
    const auto loss = std::find(steps.header.begin(), steps.header.end(), "loss");
    if (steps.rows.empty() || time == steps.header.end() || loss == steps.header.end())
      continue;
    const auto ti = static_cast<size_t>(time - steps.header.begin());
    const auto li = static_cast<size_t>(loss - steps.header.begin());
    const size_t every = std::max<size_t>(1, steps.rows.size() / 300);
    std::deque<double> window;
    double sum = 0;
    for (size_t n = 0; n < steps.rows.size(); ++n) {
      const auto& row = steps.rows[n];
      if (row.size() <= std::max(ti, li))
        continue;
      const double v = std::atof(row[li].c_str());
      window.push_back(v);
      sum += v;
      if (window.size() > 20) {
        sum -= window.front();
        window.pop_front();
      }
      if (n % every == 0 || n + 1 == steps.rows.size())
        dat << row[ti] << "," << sum / static_cast<double>(window.size()) << "\n";
    }
    dat << "\n\n";
    const auto config = j.config_name();
    const bool first = titled.insert(config).second;
    plots += std::string(plots.empty() ? "plot " : ", ") + "\"train_loss.csv\" index "
      + std::to_string(block++) + " using 1:2 with lines lw 1.2 lc "
      + std::to_string(colour[config]) + (first ? " title " + gp_string(config) : " notitle");
  }
  if (plots.empty())
    return;
  r.data("train_loss.csv", dat.str());
  r.heading("Training loss");
  r.plot("train_loss",
         "Training loss against each job's time (a line per job, a colour per configuration; "
         "mean of the last 20 steps)",
         "set xlabel \"seconds since the job started\"\nset ylabel \"training loss\"\n"
         "set key outside right top font \",8\"\n" + plots);
}

/// A pruned run's rule, decisions and the time it spent against the whole grid's.
void pruning_section(report_builder& r, const run_summary& s) {
  auto p = s.more.find("prune");
  if (p == s.more.end() || !p->is_object())
    return;
  auto number = [&](const char* key) {
    auto v = p->find(key);
    return v != p->end() && v->is_number() ? v->get<double>() : 0.0;
  };
  r.heading("Pruning");
  const double spent = number("job_seconds"), whole = number("exhaustive_job_seconds_estimate");
  table t{{"rule", "rungs (epochs)", "promotions", "configurations stopped", "job seconds",
           "whole grid (estimate)", "share"},
          {}};
  std::string rungs;
  if (p->contains("rungs") && (*p)["rungs"].is_array())
    for (const auto& e : (*p)["rungs"])
      rungs += (rungs.empty() ? "" : ", ") + e.dump();
  auto text = [&](const char* key, const char* fallback) {
    auto v = p->find(key);
    return v != p->end() && v->is_string() ? v->get<std::string>() : std::string{fallback};
  };
  t.rows.push_back({text("rule", "?"), rungs,
                    std::to_string(static_cast<int64_t>(number("promotions"))),
                    std::to_string(static_cast<int64_t>(number("configs_stopped"))),
                    fixed(spent, 1), fixed(whole, 1), whole > 0 ? fixed(spent / whole, 3) : "-"});
  r.add(t);
  r.paragraph("Job seconds: the time the jobs ran (every part of a job that paused at a rung). "
              "The whole grid's estimate: each configuration's seconds per epoch over every "
              "epoch of every fold. Decisions, in order: " + text("journal", "pruning.jsonl")
              + ".");
}

void kfold_report(report_builder& r, const fs::path& dir, const run_summary& s,
                  const std::vector<fs::path>& compare) {
  r.paragraph(run_facts(s));
  // Accuracy table and bars.
  r.heading("Validation accuracy (mean ± std over folds)");
  const bool grid = is_grid(s);
  std::vector<cell_key> cells;
  table acc{row(key_header(grid), "val accuracy mean", "std", "folds ok"), {}};
  std::ostringstream acc_dat;
  int i = 0;
  for (const auto& c : s.table) {
    cell_key k{c.model, c.scheduler, c.config_name()};
    cells.push_back(k);
    acc.rows.push_back(row(k.cells(grid), fixed(c.val_accuracy_mean), fixed(c.val_accuracy_std),
                           std::to_string(c.folds_ok)));
    acc_dat << i++ << "," << gp_string(k.label()) << "," << c.val_accuracy_mean << ","
            << c.val_accuracy_std << "\n";
  }
  if (cells.empty())
    fail(error_code::malformed_file, (dir / "summary.json").string() + ": no \"table\" of results");
  r.add(acc);
  r.data("accuracy.csv", acc_dat.str());
  double lo = 1, hi = 0;
  for (const auto& c : s.table)
    if (c.folds_ok > 0) {
      lo = std::min(lo, c.val_accuracy_mean - c.val_accuracy_std);
      hi = std::max(hi, c.val_accuracy_mean + c.val_accuracy_std);
    }
  // Points and error bars, not bars from 0: the axis is zoomed to the data.
  r.plot("accuracy",
         "Validation accuracy per configuration (mean ± std over folds; the axis is zoomed to "
         "the data)",
         "set ylabel \"validation accuracy\"\n" + yrange_around(lo, hi) + "set xrange [-0.5:"
           + std::to_string(cells.size()) + "-0.5]\nset xtics rotate by -30\nunset key\n"
           + "plot \"accuracy.csv\" using 1:3:4:xtic(2) with yerrorbars pt 7 ps 1.3 lw 1.5 "
             "lc rgb \"#4477aa\"");
  train_loss_curves(r, dir, s, cells);

  epoch_curves(r, s, cells);
  pruning_section(r, s);

  // Per-class accuracy: validation confusion matrices summed over folds.
  std::vector<std::string> classes;
  std::map<cell_key, std::vector<std::vector<double>>> confusion;
  for (const auto& j : s.jobs) {
    if (!j.ok)
      continue;
    cell_key k{j.model, j.scheduler, j.config_name()};
    const auto folder = job_folder(dir, j);
    if (!folder)
      continue;
    auto c = read_csv(*folder / "confusion.csv");
    if (c.header.size() < 2 || c.rows.empty())
      continue;
    const size_t n = c.header.size() - 1;
    if (classes.empty())
      classes.assign(c.header.begin() + 1, c.header.end());
    if (classes.size() != n)
      continue;
    auto& m = confusion[k];
    m.resize(n, std::vector<double>(n, 0));
    for (size_t row = 0; row < std::min(n, c.rows.size()); ++row)
      for (size_t col = 0; col < n && col + 1 < c.rows[row].size(); ++col)
        m[row][col] += std::atof(c.rows[row][col + 1].c_str());
  }
  if (!confusion.empty()) {
    r.heading("Per-class accuracy (validation, all folds)");
    std::ostringstream dat;
    dat << "class";
    table t{{"class"}, {}};
    std::vector<cell_key> present;
    for (const auto& k : cells)
      if (confusion.count(k)) {
        present.push_back(k);
        dat << "," << gp_string(k.label());
        t.header.push_back(k.label());
      }
    dat << "\n";
    for (size_t c = 0; c < classes.size(); ++c) {
      dat << gp_string(classes[c]);
      std::vector<std::string> row{classes[c]};
      for (const auto& k : present) {
        const auto& m = confusion[k];
        double total = 0;
        for (double v : m[c])
          total += v;
        double a = total > 0 ? m[c][c] / total : 0;
        dat << "," << a;
        row.push_back(fixed(a, 3));
      }
      dat << "\n";
      t.rows.push_back(row);
    }
    r.data("per_class.csv", dat.str());
    r.add(t);
    r.plot("per_class", "Per-class validation accuracy",
           "set style data histograms\nset style histogram clustered gap 1\n"
           "set style fill solid 0.7 border -1\nset yrange [0:1.05]\n"
           "set ylabel \"accuracy\"\nset xtics rotate by -30\n"
           "plot for [i=2:"
             + std::to_string(present.size() + 1)
             + "] \"per_class.csv\" using i:xtic(1) title columnheader(i)");
  }

  // Job timeline: one lane per host and slot, one bar per job, coloured by model.
  r.heading("Job timeline");
  std::set<std::pair<std::string, int>> lanes;
  std::vector<std::string> models;
  for (const auto& j : s.jobs) {
    lanes.insert({j.host, j.slot});
    if (std::find(models.begin(), models.end(), j.model) == models.end())
      models.push_back(j.model);
  }
  std::map<std::pair<std::string, int>, int> lane_of;
  std::string ytics;
  for (const auto& l : lanes) {
    int n = static_cast<int>(lane_of.size());
    lane_of[l] = n;
    ytics += (ytics.empty() ? "" : ", ") + gp_string(l.first + " slot " + std::to_string(l.second))
      + " " + std::to_string(n);
  }
  std::ostringstream tl;
  table jobs_table{{"job", "host", "slot", "start (s)", "end (s)", "val accuracy"}, {}};
  for (const auto& j : s.jobs) {
    double a = j.started_at, b = j.finished_at;
    auto lane = lane_of[{j.host, j.slot}];
    auto model = std::find(models.begin(), models.end(), j.model) - models.begin();
    tl << (a + b) / 2 << "," << lane << "," << (b - a) / 2 << ",0.35," << model + 1 << "\n";
    jobs_table.rows.push_back({j.config_name() + "/fold" + std::to_string(j.fold),
                               j.host, std::to_string(j.slot), fixed(a, 2), fixed(b, 2),
                               j.ok ? fixed(figure(j.val_accuracy)) : "failed"});
  }
  r.data("timeline.csv", tl.str());
  std::string legend;
  for (size_t m = 0; m < models.size(); ++m)
    legend += ", NaN with boxes fs solid 0.7 lc " + std::to_string(m + 1) + " title "
      + gp_string(models[m]);
  r.plot(
    "timeline", "Job timeline: each job's start and end per host and slot",
    "set xlabel \"seconds since the start\"\nset ytics (" + ytics
      + ")\nset yrange [-0.6:" + std::to_string(lanes.size())
      + "-0.4]\nset grid xtics\n"
        "plot \"timeline.csv\" using 1:2:3:4:5 with boxxyerror fs solid 0.7 lc variable notitle"
      + legend);
  r.add(jobs_table);

  r.heading("CPU utilisation");
  cpu_plot(r, dir, s);

  // Against a serial reference run: time and speedup per model and scheduler.
  for (const auto& ref_dir : compare) {
    auto ref = run_summary::read(ref_dir);
    if (ref.command != "kfold")
      fail(error_code::invalid_argument,
           "--compare " + ref_dir.string() + ": a " + ref.command
             + " run; a kfold report compares with another kfold run (e.g. --serial)");
    auto mine = spans(s), theirs = spans(ref);
    r.heading("Against " + ref_dir.string() + " (" + ref.mode.value_or("?") + ")");
    const double wall_ref = ref.wall_seconds, wall = s.wall_seconds;
    r.paragraph("Whole run: " + fixed(wall_ref, 1) + " s there, " + fixed(wall, 1)
                + " s here: speedup " + fixed(wall > 0 ? wall_ref / wall : 0, 2) + "x.");
    table t{row(key_header(grid), ref.mode.value_or("reference") + " (s)",
                s.mode.value_or("this run") + " (s)", "speedup"),
            {}};
    std::ostringstream dat;
    dat << "cell," << gp_string(ref.mode.value_or("reference")) << ","
        << gp_string(s.mode.value_or("this")) << ",speedup\n";
    for (const auto& k : cells) {
      if (!mine.count(k) || !theirs.count(k))
        continue;
      double sp = mine[k] > 0 ? theirs[k] / mine[k] : 0;
      t.rows.push_back(row(k.cells(grid), fixed(theirs[k], 2), fixed(mine[k], 2), fixed(sp, 2)));
      dat << gp_string(k.label()) << "," << theirs[k] << "," << mine[k] << "," << sp << "\n";
    }
    if (t.rows.empty())
      fail(error_code::invalid_argument,
           "--compare " + ref_dir.string() + ": no configuration in common with this run");
    r.add(t);
    r.data("speedup.csv", dat.str());
    r.plot("speedup",
           "Time per model and scheduler (first start to last end of its folds) and speedup",
           "set multiplot layout 1,2\nset style data histograms\n"
           "set style histogram clustered gap 1\nset style fill solid 0.7 border -1\n"
           "set xtics rotate by -30\nset ylabel \"seconds\"\nset key top left inside\n"
           "plot \"speedup.csv\" using 2:xtic(1) title columnheader(2), \"\" using 3 title "
           "columnheader(3)\nset ylabel \"speedup (x)\"\nset yrange [0:*]\nunset key\n"
           "plot \"speedup.csv\" using 4:xtic(1) title columnheader(4) lc rgb \"#228833\"\n"
           "unset multiplot");
    break; // one reference
  }
}

/// `report DIR1 DIR2 ...` of K-fold runs: each configuration's validation accuracy
/// (mean ± std over folds) in every run, in a table and one plot, and each run's wall
/// time. Configurations are matched by name; a run without one shows "-".
void kfold_side_by_side(report_builder& r, const fs::path& dir, const run_summary& s,
                        const std::vector<fs::path>& others) {
  std::vector<std::pair<std::string, run_summary>> runs{{dir.filename().string(), s}};
  for (const auto& other : others) {
    auto o = run_summary::read(other);
    if (o.command != "kfold")
      fail(error_code::invalid_argument,
           other.string() + ": a " + o.command + " run; kfold runs go side by side with kfold runs");
    runs.emplace_back(other.filename().string(), std::move(o));
  }
  std::set<std::string> names;
  for (auto& [name, run] : runs)
    while (!names.insert(name).second)
      name += "'"; // two folders of the same name
  std::vector<std::string> configs;
  for (const auto& [name, run] : runs)
    for (const auto& c : run.table)
      if (std::find(configs.begin(), configs.end(), c.config_name()) == configs.end())
        configs.push_back(c.config_name());
  table t{{"configuration"}, {}};
  for (const auto& [name, run] : runs)
    t.header.push_back(name);
  std::ostringstream dat;
  std::string plots;
  double lo = 1, hi = 0;
  const double width = 0.6 / static_cast<double>(runs.size());
  for (size_t i = 0; i < configs.size(); ++i) {
    std::vector<std::string> cells{configs[i]};
    for (const auto& [name, run] : runs) {
      auto c = std::find_if(run.table.begin(), run.table.end(),
                            [&](const cell_summary& x) { return x.config_name() == configs[i]; });
      cells.push_back(c == run.table.end() || c->folds_ok == 0
                        ? "-"
                        : fixed(c->val_accuracy_mean) + " ± " + fixed(c->val_accuracy_std));
    }
    t.rows.push_back(cells);
  }
  std::vector<std::string> wall{"wall time (s)"};
  for (size_t k = 0; k < runs.size(); ++k) {
    const auto& run = runs[k].second;
    wall.push_back(fixed(run.wall_seconds, 1));
    const double shift = (static_cast<double>(k) - (static_cast<double>(runs.size()) - 1) / 2) * width;
    for (size_t i = 0; i < configs.size(); ++i)
      for (const auto& c : run.table)
        if (c.config_name() == configs[i] && c.folds_ok > 0) {
          dat << static_cast<double>(i) + shift << "," << gp_string(configs[i]) << ","
              << c.val_accuracy_mean << "," << c.val_accuracy_std << "\n";
          lo = std::min(lo, c.val_accuracy_mean - c.val_accuracy_std);
          hi = std::max(hi, c.val_accuracy_mean + c.val_accuracy_std);
        }
    dat << "\n\n";
    plots += std::string(plots.empty() ? "plot " : ", ") + "\"side_by_side.csv\" index "
      + std::to_string(k) + " using 1:3:4 with yerrorbars pt 7 ps 1.2 lw 1.5 title "
      + gp_string(runs[k].first);
  }
  t.rows.push_back(wall);
  std::string xtics;
  for (size_t i = 0; i < configs.size(); ++i)
    xtics += (xtics.empty() ? "" : ", ") + gp_string(configs[i]) + " " + std::to_string(i);
  r.heading("Runs side by side");
  r.add(t);
  r.data("side_by_side.csv", dat.str());
  r.plot("side_by_side",
         "Validation accuracy per configuration in each run (mean ± std over folds; the axis is "
         "zoomed to the data)",
         "set ylabel \"validation accuracy\"\n" + yrange_around(lo, hi) + "set xrange [-0.5:"
           + std::to_string(configs.size()) + "-0.5]\nset xtics (" + xtics
           + ") rotate by -30\nset key outside right top\n" + plots);
}

/// One run's line in a HOGWILD/SGD comparison.
struct sgd_run {
  fs::path dir;
  run_summary summary;
  std::string label;
};

std::string sgd_label(const run_summary& s) {
  std::string mode = s.command;
  if (s.worker_list_size)
    mode += " " + std::to_string(*s.worker_list_size) + " worker(s)";
  return mode;
}

/// An SGD run's workers: what each pushed and how stale its pushes were (holder
/// versions from other workers it had not seen), from summary.json's worker_list.
void sgd_workers(report_builder& r, const fs::path& dir) {
  auto j = nlohmann::json::parse(pnn::read_text_file(dir / "summary.json"), nullptr, false);
  if (!j.is_object() || !j.contains("worker_list") || !j["worker_list"].is_array())
    return;
  auto text = [](const nlohmann::json& w, const char* key, int digits) -> std::string {
    if (!w.contains(key) || !w[key].is_number())
      return "-";
    return fixed(w[key].get<double>(), digits);
  };
  r.heading("Workers and staleness");
  std::string how = "Optimizer on the ";
  how += j.value("optimizer_on", std::string("workers"));
  if (j.contains("merge") && j["merge"].is_string())
    how += ", updates " + std::string(j["merge"] == "average" ? "averaged" : "summed");
  how += "; staleness: holder updates from other workers applied since the parameters a push "
         "was computed on (mean " + text(j, "staleness_mean", 2) + ", max "
    + text(j, "staleness_max", 0) + ").";
  r.paragraph(how);
  table t{{"worker", "host", "samples", "pushes", "rejected", "staleness mean", "staleness max",
           "sync pulls"},
          {}};
  for (const auto& w : j["worker_list"]) {
    if (!w.is_object())
      continue;
    t.rows.push_back({text(w, "worker", 0), w.value("host", std::string("-")),
                      text(w, "samples", 0), text(w, "pushes", 0), text(w, "rejected_pushes", 0),
                      text(w, "staleness_mean", 2), text(w, "staleness_max", 0),
                      text(w, "sync_pulls", 0)});
  }
  r.add(t);
}

void sgd_report(report_builder& r, const fs::path& dir, const run_summary& s,
                const std::vector<fs::path>& compare) {
  r.paragraph(run_facts(s));
  std::vector<sgd_run> runs{{dir, s, sgd_label(s)}};
  for (const auto& c : compare) {
    auto other = run_summary::read(c);
    const auto cmd = other.command;
    if (cmd != "hogwild" && cmd != "sgd")
      fail(error_code::invalid_argument,
           "--compare " + c.string() + ": a " + cmd + " run; expected hogwild or sgd");
    runs.push_back({c, other, sgd_label(other)});
  }
  // Two runs with the same label get their folder names too.
  std::map<std::string, int> seen;
  for (auto& run : runs)
    ++seen[run.label];
  for (auto& run : runs)
    if (seen[run.label] > 1)
      run.label += " (" + run.dir.filename().string() + ")";

  r.heading("Results");
  table t{{"run", "test accuracy", "samples/s", "wall (s)", "final train loss"}, {}};
  std::ostringstream bars;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& rs = runs[i].summary;
    t.rows.push_back({runs[i].label, fixed(figure(rs.test_accuracy)),
                      fixed(figure(rs.samples_per_second), 0), fixed(rs.wall_seconds, 1),
                      rs.final_train_loss ? fixed(figure(rs.final_train_loss)) : "-"});
    bars << i << "," << gp_string(runs[i].label) << "," << figure(rs.test_accuracy) << ","
         << figure(rs.samples_per_second) << "\n";
  }
  r.add(t);

  r.heading("Training loss against wall time");
  std::string plot_cmd;
  int lines = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    auto loss = read_csv(runs[i].dir / "loss.csv");
    int tc = loss.column("time"), lc = loss.column("loss_smoothed");
    if (lc < 0)
      lc = loss.column("loss");
    if (tc < 0 || lc < 0 || loss.rows.empty())
      continue;
    std::ostringstream dat;
    // At most ~2000 points per line: enough for the eye, small files.
    const size_t step = std::max<size_t>(1, loss.rows.size() / 2000);
    for (size_t row = 0; row < loss.rows.size(); row += step)
      if (loss.rows[row].size() > static_cast<size_t>(std::max(tc, lc)))
        dat << loss.rows[row][static_cast<size_t>(tc)] << ","
            << loss.rows[row][static_cast<size_t>(lc)] << "\n";
    const auto name = "loss_" + std::to_string(i) + ".csv";
    r.data(name, dat.str());
    plot_cmd += (plot_cmd.empty() ? "plot " : ", ") + gp_string(name)
      + " using 1:2 with lines lw 2 title " + gp_string(runs[i].label);
    ++lines;
  }
  if (lines == 0)
    fail(error_code::malformed_file, (dir / "loss.csv").string() + ": no loss samples to plot");
  r.plot("loss", "Training loss (moving average) against wall time",
         "set xlabel \"seconds since the start\"\nset ylabel \"training loss\"\n" + plot_cmd);

  r.data("runs.csv", bars.str());
  const std::string xrange = "set xrange [-0.6:" + std::to_string(runs.size()) + "-0.4]\n";
  r.plot("accuracy", "Test accuracy per run",
         xrange
           + "set ylabel \"test accuracy\"\nset yrange [0:1.05]\nset style fill solid 0.6\n"
             "set boxwidth 0.6\nunset key\nset xtics rotate by -20\n"
             "plot \"runs.csv\" using 1:3:xtic(2) with boxes lc rgb \"#4477aa\"");
  r.plot("throughput", "Training samples per second per run",
         xrange
           + "set ylabel \"samples/s\"\nset yrange [0:*]\nset style fill solid 0.6\n"
             "set boxwidth 0.6\nunset key\nset xtics rotate by -20\n"
             "plot \"runs.csv\" using 1:4:xtic(2) with boxes lc rgb \"#228833\"");

  if (s.command == "sgd")
    sgd_workers(r, dir);

  if (s.per_class_accuracy) {
    r.heading("Per-class test accuracy");
    std::ostringstream dat;
    table pc{{"class", "test accuracy"}, {}};
    const auto& pca = *s.per_class_accuracy;
    for (size_t c = 0; c < pca.size(); ++c) {
      std::string name = "class " + std::to_string(c);
      if (s.classes && c < s.classes->size())
        name = (*s.classes)[c];
      double a = std::isfinite(pca[c]) ? pca[c] : 0;
      dat << c << "," << gp_string(name) << "," << a << "\n";
      pc.rows.push_back({name, fixed(a, 3)});
    }
    r.data("per_class.csv", dat.str());
    r.add(pc);
    r.plot("per_class", "Per-class test accuracy",
           "set ylabel \"accuracy\"\nset yrange [0:1.05]\nset style fill solid 0.6\n"
           "set boxwidth 0.6\nunset key\nset xtics rotate by -30\n"
           "plot \"per_class.csv\" using 1:3:xtic(2) with boxes lc rgb \"#aa3377\"");
  }
  r.heading("CPU utilisation");
  cpu_plot(r, dir, s);
}

} // namespace

report_files write_report(const report_request& request) {
  const auto s = run_summary::read(request.dir);
  const auto& command = s.command;
  report_builder r{request.dir};
  if (command == "kfold") {
    kfold_report(r, request.dir, s, request.compare);
    if (!request.runs.empty())
      kfold_side_by_side(r, request.dir, s, request.runs);
  } else if (command == "hogwild" || command == "sgd") {
    auto compare = request.compare; // other runs of one model: the comparison itself
    compare.insert(compare.end(), request.runs.begin(), request.runs.end());
    sgd_report(r, request.dir, s, compare);
  }
  else
    fail(error_code::invalid_argument,
         request.dir.string() + ": a " + command
           + " run; reports cover kfold, hogwild and sgd runs");
  return r.finish("pnn " + command + " report: " + request.dir.filename().string(),
                  request.gnuplot);
}

int run_report(const report_request& request) {
  auto files = write_report(request);
  std::printf("report: %s and %s (%zu plot(s) in %s)\n", files.markdown.c_str(), files.html.c_str(),
              files.plots.size(), (request.dir / "report").c_str());
  return 0;
}

} // namespace pnn::runtime
