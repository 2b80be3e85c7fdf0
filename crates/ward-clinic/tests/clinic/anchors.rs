//! Anchoring clinic heads in the control plane.

use std::sync::Arc;

use ward_clinic::audit::{self, Anchorer, BoxError, Head};
use ward_control::ControlPlane;
use ward_core::ClinicId;

use crate::support::{TestPlatform, append};

fn sink(
    control: Arc<ControlPlane>,
) -> impl Fn(Vec<(ClinicId, Head)>) -> futures::future::BoxFuture<'static, Result<(), BoxError>>
+ Send
+ Sync
+ 'static {
    move |heads| {
        let control = control.clone();
        Box::pin(async move {
            let rows: Vec<_> = heads
                .into_iter()
                .map(|(id, h)| (id, h.seq, h.hash))
                .collect();
            control.anchor_many(&rows).await?;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_pass_anchors_the_heads_that_moved() {
    let t = TestPlatform::new().await;
    let a = t.clinic("Acme").await;
    let b = t.clinic("Bravo").await;
    let control = t.platform.control.clone();
    let anchorer = Anchorer::new(t.platform.tenants.clone(), sink(control.clone()));

    t.with(&a, |conn| append(&conn, 0..7)).await;
    let run = anchorer.anchor_open().await.unwrap();
    assert_eq!(
        (run.clinics, run.anchored, run.failed),
        (2, 1, 0),
        "{run:?}"
    );
    let head_a = t
        .with(&a, |conn| audit::head(&conn).unwrap().unwrap())
        .await;
    let anchor = control.anchor_of(a.id).await.unwrap().unwrap();
    assert_eq!((anchor.seq, anchor.hash.clone()), (7, head_a.hash));
    assert_eq!(
        control.anchor_of(b.id).await.unwrap(),
        None,
        "an empty log has nothing to anchor"
    );

    assert_eq!(
        anchorer.anchor_open().await.unwrap().anchored,
        0,
        "nothing moved"
    );

    t.with(&a, |conn| append(&conn, 7..9)).await;
    t.with(&b, |conn| append(&conn, 0..3)).await;
    assert_eq!(anchorer.anchor_open().await.unwrap().anchored, 2);
    assert_eq!(control.anchor_of(a.id).await.unwrap().unwrap().seq, 9);
    assert_eq!(control.anchor_of(b.id).await.unwrap().unwrap().seq, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn anchors_move_only_forward_unless_a_restore_resets_them() {
    let t = TestPlatform::new().await;
    let a = t.clinic("Acme").await;
    let control = &t.platform.control;
    control.anchor(a.id, 5, &[5; 32]).await.unwrap();
    control.anchor(a.id, 3, &[3; 32]).await.unwrap();
    let kept = control.anchor_of(a.id).await.unwrap().unwrap();
    assert_eq!((kept.seq, kept.hash), (5, vec![5; 32]));

    control
        .reset_anchor(
            a.id,
            3,
            &[3; 32],
            &ward_core::Actor::Operator,
            "restored from the backup of 1 March",
        )
        .await
        .unwrap();
    let reset = control.anchor_of(a.id).await.unwrap().unwrap();
    assert_eq!((reset.seq, reset.hash), (3, vec![3; 32]));
}
