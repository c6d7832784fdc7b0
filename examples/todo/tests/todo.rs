use composable::testing::TestStore;
use todo::{Action, SORT_DELAY, Todo, TodoAction, Todos, todos};

fn todo(text: &str, done: bool) -> Todo {
    Todo { text: text.into(), done }
}

async fn with_two_rows()
-> TestStore<impl composable::Reducer<State = Todos, Action = Action, Environment = ()>> {
    let mut store = TestStore::new(todos(), Todos::default(), ());
    store
        .send(Action::Add("a".into()), |s| {
            s.rows.insert(0, todo("a", false));
            s.order = vec![0];
            s.next_id = 1;
        })
        .await;
    store
        .send(Action::Add("b".into()), |s| {
            s.rows.insert(1, todo("b", false));
            s.order = vec![0, 1];
            s.next_id = 2;
        })
        .await;
    store
}

#[tokio::test]
async fn completing_a_row_sorts_it_down_after_the_delay() {
    let mut store = with_two_rows().await;
    store
        .send(Action::Row(0, TodoAction::Toggle), |s| s.rows.get_mut(&0).expect("row").done = true)
        .await;
    store.advance(SORT_DELAY).await;
    store.receive(Action::Sort, |s| s.order = vec![1, 0]).await;
    store.finish().await;
}

#[tokio::test]
async fn completing_again_within_the_delay_restarts_it() {
    let mut store = with_two_rows().await;
    store
        .send(Action::Row(0, TodoAction::Toggle), |s| s.rows.get_mut(&0).expect("row").done = true)
        .await;
    store.advance(SORT_DELAY / 2).await;
    store
        .send(Action::Row(1, TodoAction::Toggle), |s| s.rows.get_mut(&1).expect("row").done = true)
        .await;
    store.advance(SORT_DELAY / 2).await;
    // The first wait was cancelled: no sort yet.
    store.advance(SORT_DELAY / 2).await;
    store.receive(Action::Sort, |_| {}).await;
    store.finish().await;
}

#[tokio::test]
async fn editing_a_row_touches_only_that_row() {
    let mut store = with_two_rows().await;
    store
        .send(Action::Row(1, TodoAction::Edit("bee".into())), |s| {
            s.rows.get_mut(&1).expect("row").text = "bee".into()
        })
        .await;
    store.send(Action::Row(7, TodoAction::Edit("ghost".into())), |_| {}).await;
    store.finish().await;
}

#[tokio::test]
async fn clearing_removes_completed_rows() {
    let mut store = with_two_rows().await;
    store
        .send(Action::Row(1, TodoAction::Toggle), |s| s.rows.get_mut(&1).expect("row").done = true)
        .await;
    store
        .send(Action::ClearCompleted, |s| {
            s.rows.remove(&1);
            s.order = vec![0];
        })
        .await;
    store.advance(SORT_DELAY).await;
    store.receive(Action::Sort, |_| {}).await;
    store.finish().await;
}
