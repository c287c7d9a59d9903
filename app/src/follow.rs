//! A live log that follows its newest line, the way a terminal's `tail -f` does: it keeps the newest
//! line in view as lines arrive, unless the reader scrolled up to read (or paused it); then it stays
//! where the reader is, and a "Jump to latest" button says how many lines came since.

use leptos::prelude::*;

/// How far from the bottom (in CSS pixels) still counts as "at the newest line": a fraction of a
/// line, so a reader who scrolls up by one line has left it.
const AT_BOTTOM_SLACK: i32 = 8;

/// The log box and its controls. `newest` is the number of the newest line held (it changes whenever
/// a line arrives); the children are the lines.
#[component]
pub fn FollowingLog(
    /// The newest line's sequence number: a change means lines arrived.
    #[prop(into)]
    newest: Signal<u64>,
    /// Extra classes of the log box (`deploy-log`).
    #[prop(into, optional)]
    class: String,
    /// The log box's `data-testid`.
    #[prop(into)]
    testid: String,
    /// What the log is, for screen readers ("deploy log", "backend log").
    #[prop(into)]
    label: String,
    children: Children,
) -> impl IntoView {
    let scroller = NodeRef::<leptos::html::Div>::new();
    // Where the box itself last scrolled to: the browser reports that scroll a frame later, when more
    // lines may have arrived, so only a position above it is the reader's doing.
    let put_at = StoredValue::new(0i32);
    let following = RwSignal::new(true);
    // The newest line when the reader stopped following: the lines after it are "new".
    let left_at = RwSignal::new(0u64);
    let unseen = move || {
        if following.get() {
            0
        } else {
            newest.get().saturating_sub(left_at.get())
        }
    };

    // Lines arrived: keep the newest in view while following. The scroll waits for the next frame,
    // when the new lines are in the document and the box has its new height.
    Effect::new(move |_| {
        newest.track();
        if following.get_untracked() {
            request_animation_frame(move || scroll_to_end(scroller, put_at));
        }
    });
    let stop_following = move || {
        if following.get_untracked() {
            left_at.set(newest.get_untracked());
            following.set(false);
        }
    };
    let follow = move || {
        following.set(true);
        scroll_to_end(scroller, put_at);
    };
    // The reader scrolled: up (above where the box put itself) stops following, back down to the
    // newest line resumes it. Lines that arrive do not scroll the box by themselves
    // (`overflow-anchor: none`), so only the reader and `scroll_to_end` get here.
    let on_scroll = move |_| {
        let Some(el) = scroller.get_untracked() else {
            return;
        };
        let top = el.scroll_top();
        if top + el.client_height() >= el.scroll_height() - AT_BOTTOM_SLACK {
            following.set(true);
        } else if top + AT_BOTTOM_SLACK < put_at.get_value() {
            stop_following();
        }
    };

    view! {
        <div class="log-controls">
            <button type="button" data-testid=format!("{testid}-follow") aria-pressed=move || following.get().to_string()
                on:click=move |_| if following.get_untracked() { stop_following() } else { follow() }>
                {move || if following.get() { "Pause" } else { "Follow" }}
            </button>
            <span class="muted small" data-testid=format!("{testid}-following") data-following=move || following.get().to_string()>
                {move || if following.get() { "following the newest line" } else { "paused: new lines are added below" }}
            </span>
            {let jump_id = format!("{testid}-jump"); move || (unseen() > 0).then(|| view! {
                <button type="button" class="jump" data-testid=jump_id.clone() on:click=move |_| follow()>
                    {format!("Jump to latest ↓ {} new", unseen())}
                </button>
            })}
        </div>
        <div class=format!("log {class}") data-testid=testid node_ref=scroller on:scroll=on_scroll
            role="log" aria-live="off" aria-label=label tabindex="0">
            {children()}
        </div>
    }
}

/// Scrolls the log box to its newest line and remembers where that put it.
fn scroll_to_end(scroller: NodeRef<leptos::html::Div>, put_at: StoredValue<i32>) {
    if let Some(el) = scroller.get_untracked() {
        el.set_scroll_top(el.scroll_height());
        put_at.set_value(el.scroll_top());
    }
}
