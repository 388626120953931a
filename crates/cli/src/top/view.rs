//! Drawing `vigilctl top` with ratatui: the header, the process table (only
//! the rows that fit are built, so thousands of processes cost one screenful),
//! the log pane of the selected process and the key line.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table, TableState};
use vigil_rpc::ProcessState;

use super::model::{Model, Row, SortKey, compact_bytes, compact_duration};

/// The keys, as the footer lists them.
const KEYS: &str =
    "q quit  ↑↓ select  s start  x stop  r restart  o sort  O reverse  / filter  e stdout/stderr";

/// Draws the whole screen.
pub(crate) fn draw(frame: &mut Frame<'_>, model: &Model) {
    let [header, table, log, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Percentage(30),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, model);
    draw_table(frame, table, model);
    draw_log(frame, log, model);
    draw_footer(frame, footer, model);
}

fn draw_header(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let (total, running) = model.counts();
    let order = if model.descending { "desc" } else { "asc" };
    let mut spans = vec![
        Span::styled("vigil top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {}  {running}/{total} running  sort {} {order}",
            model.daemon,
            model.sort.title()
        )),
    ];
    if !model.filter.is_empty() || model.editing_filter {
        spans.push(Span::raw(format!("  filter {:?}", model.filter)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn state_style(state: ProcessState) -> Style {
    match state {
        ProcessState::Running => Style::new().fg(Color::Green),
        ProcessState::Starting | ProcessState::Stopping => Style::new().fg(Color::Yellow),
        ProcessState::Backoff | ProcessState::Fatal | ProcessState::Unknown => {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        }
        ProcessState::Stopped | ProcessState::Exited => Style::new().fg(Color::DarkGray),
    }
}

fn cells(row: &Row) -> TableRow<'_> {
    let dash = || "-".to_owned();
    let health_style = match row.health.as_str() {
        "healthy" => Style::new().fg(Color::Green),
        "unhealthy" => Style::new().fg(Color::Red),
        _ => Style::new(),
    };
    TableRow::new(vec![
        Cell::from(row.namespec.as_str()),
        Cell::from(row.state.name()).style(state_style(row.state)),
        Cell::from(row.health.as_str()).style(health_style),
        Cell::from(if row.ready { "yes" } else { "no" }),
        Cell::from(if row.pid == 0 { dash() } else { row.pid.to_string() }),
        Cell::from(row.uptime.map_or_else(dash, compact_duration)),
        Cell::from(row.cpu_percent.map_or_else(dash, |p| format!("{p:.1}"))),
        Cell::from(row.rss.map_or_else(dash, compact_bytes)),
        Cell::from(row.restarts.to_string()),
    ])
}

fn draw_table(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let block = Block::new().borders(Borders::TOP | Borders::BOTTOM).title(" processes ");
    let inner = block.inner(area);
    // Rows that fit below the heading.
    let fits = usize::from(inner.height.saturating_sub(1)).max(1);
    let total = model.shown().len();
    let selected = model.selected_index();
    // Scroll so the selection is on screen, as low as it can be kept.
    let first = selected.map_or(0, |s| s.saturating_sub(fits - 1)).min(total.saturating_sub(fits));
    let rows: Vec<TableRow<'_>> = model.shown().skip(first).take(fits).map(cells).collect();
    let sorted = model.sort;
    let heading = |key: Option<SortKey>, title: &'static str| {
        let marker =
            if key == Some(sorted) { if model.descending { "▼" } else { "▲" } } else { "" };
        Cell::from(format!("{title}{marker}"))
    };
    let header = TableRow::new(vec![
        heading(Some(SortKey::Name), "NAME"),
        heading(Some(SortKey::State), "STATE"),
        heading(None, "HEALTH"),
        heading(None, "READY"),
        heading(Some(SortKey::Pid), "PID"),
        heading(Some(SortKey::Uptime), "UPTIME"),
        heading(Some(SortKey::Cpu), "CPU%"),
        heading(Some(SortKey::Rss), "RSS"),
        heading(Some(SortKey::Restarts), "RESTARTS"),
    ])
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let table = Table::new(
        rows,
        [
            Constraint::Min(16),
            Constraint::Length(9),
            Constraint::Length(16),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(9),
        ],
    )
    .header(header)
    .block(block)
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::new().with_selected(selected.map(|s| s - first));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_log(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let title = match &model.log_name {
        Some(name) => {
            let channel = if model.log_stderr { "stderr" } else { "stdout" };
            format!(" {name} {channel} (following) ")
        }
        None => " log ".to_owned(),
    };
    let block = Block::new().borders(Borders::BOTTOM).title(title);
    let lines = model
        .log_tail(usize::from(block.inner(area).height))
        .into_iter()
        .map(|line| Line::raw(line.to_owned()))
        .collect::<Vec<_>>();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_footer(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let line = if model.editing_filter {
        Line::from(vec![
            Span::styled("filter: ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(model.filter.clone()),
            Span::raw("_  (Enter keeps, Esc clears)"),
        ])
    } else if model.message.is_empty() {
        Line::raw(KEYS)
    } else {
        Line::from(vec![
            Span::styled(model.message.clone(), Style::new().add_modifier(Modifier::BOLD)),
            Span::raw("   "),
            Span::raw(KEYS),
        ])
    };
    frame.render_widget(Paragraph::new(line), area);
}
