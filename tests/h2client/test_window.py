"""The stream window's rule, fed round trips as a connection would."""

from owlmetry.h2client.window import StreamWindow


def test_the_window_grows_by_one_per_prompt_answer_up_to_the_peer_limit():
    window = StreamWindow(least=10, target_s=0.1)
    for i in range(100):
        window.answered(0.02, now=i * 0.001, most=60)
    assert window.size == 60


def test_answers_queued_past_the_target_shrink_it_down_to_the_least():
    window = StreamWindow(least=10, target_s=0.1)
    for i in range(50):
        window.answered(0.02, now=i * 0.001, most=1000)
    assert window.size == 60
    for i in range(20):
        window.answered(0.2, now=1 + i * 0.001, most=1000)  # 0.18 s queued behind the others
    assert window.size == 40
    for i in range(100):
        window.answered(0.2, now=2 + i * 0.001, most=1000)
    assert window.size == 10


def test_a_path_that_got_slower_is_read_as_a_queue_for_one_epoch_only():
    window = StreamWindow(least=10, target_s=0.1)
    window.answered(0.02, now=0.0, most=1000)
    sizes = []
    for epoch in (1, 2):
        for i in range(30):
            window.answered(0.3, now=epoch * 10.0 + i * 0.001, most=1000)
        sizes.append(window.size)
    # The next epoch still remembers the 20 ms answer; the one after takes 0.3 s as the base.
    assert sizes == [10, 40]
